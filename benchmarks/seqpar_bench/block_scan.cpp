// seqpar-bench block_scan: one process's 2x2 block scan throughput (seqpar.block_scan,
// docs/block_scan.md), forward and backward GB/s of the CPU kernels on preallocated outputs
// against triad measured in the same run with the same thread count, as local_scan does for the
// diagonal scan (the op's own figure, which also allocates and first-touches its outputs, is
// extra.op_gbs).
//   bytes_moved counts A, b and h (forward: 4 + 2 + 2 elements per (batch, time, channel)) and
//   A, h, grad_h, grad_A, grad_b (backward: 4 + 2 + 2 + 4 + 2), as issue #33's targets do
//   (>= 70% of triad forward, >= 60% backward for (1, 2^22, 64) and (64, 2^16, 1)).
// Shapes: --shapes BxTxC,... (float32 or bfloat16 inputs, contiguous); --lower runs the
// lower-triangular path. One process only, like local_scan.
#include <ATen/Parallel.h>
#include <boost/program_options.hpp>
#include <torch/torch.h>

#include <cstdio>
#include <sstream>
#include <thread>

#include "bench.h"
#include "flushed_timer.h"
#include "ops/block_scan_prepare.h"
#include "ops/op_handles.h"
#include "seqpar/comm/communicator.h"
#include "seqpar/kernels/cpu_block_scan.h"
#include "seqpar/kernels/cpu_scan.h"

namespace po = boost::program_options;

namespace seqpar::bench {
namespace {

struct BlockShape {
  int64_t B, T, C;
};

BlockShape parse_shape(const std::string& spec) {
  BlockShape s{0, 0, 0};
  char x1 = 0, x2 = 0;
  std::istringstream in(spec);
  in >> s.B >> x1 >> s.T >> x2 >> s.C;
  if (!in || x1 != 'x' || x2 != 'x' || s.B < 1 || s.T < 1 || s.C < 1 || !in.eof())
    throw std::invalid_argument("--shapes: each shape is BxTxC with positive sizes, got '" +
                                spec + "'");
  return s;
}

}  // namespace

int run_block_scan(const CommonOptions& common, const std::vector<std::string>& args,
                   std::shared_ptr<comm::Communicator> world, RecordFile& out) {
  std::string dtype_name = "float32";
  std::vector<std::string> shape_specs;
  std::vector<int> thread_counts;
  bool lower = false;
  po::options_description desc("seqpar-bench block_scan options");
  desc.add_options()
      ("dtype", po::value(&dtype_name)->default_value(dtype_name), "float32 or bfloat16")
      ("shapes", po::value(&shape_specs)->multitoken(),
       "BxTxC shapes (default: 1x4194304x64 64x65536x1; --quick: 1x65536x64 16x16384x1)")
      ("threads", po::value(&thread_counts)->multitoken(),
       "thread counts (default: 1 and all hardware threads; --quick: the first only)")
      ("lower", po::bool_switch(&lower), "lower_triangular (A[..., 0, 1] not read)");
  parse_options(desc, args);
  if (world->size() > 1)
    throw std::invalid_argument("it measures one process's memory bandwidth: run it without "
                                "mpirun (or with -np 1), not with " +
                                std::to_string(world->size()) + " ranks");
  if (dtype_name != "float32" && dtype_name != "bfloat16")
    throw std::invalid_argument("--dtype must be float32 or bfloat16, got '" + dtype_name + "'");
  const at::ScalarType dtype = dtype_name == "float32" ? at::kFloat : at::kBFloat16;
  if (shape_specs.empty())
    shape_specs = common.quick ? std::vector<std::string>{"1x65536x64", "16x16384x1"}
                               : std::vector<std::string>{"1x4194304x64", "64x65536x1"};
  std::vector<BlockShape> shapes;
  for (const std::string& spec : shape_specs) shapes.push_back(parse_shape(spec));
  const int hw = std::max(1u, std::thread::hardware_concurrency());
  if (thread_counts.empty()) thread_counts = hw > 1 ? std::vector<int>{1, hw} : std::vector<int>{1};
  if (common.quick) thread_counts.resize(1);
  for (int t : thread_counts)
    if (t < 1) throw std::invalid_argument("--threads must be >= 1");
  const double es = double(c10::elementSize(dtype));
  FlushedTimer timed(common.reps_or(5, 2));
  torch::manual_seed(0);
  torch::NoGradGuard no_grad;
  const std::string target = kernels::cpu::capability();
  std::printf("CPU engine target: %s; transparent huge pages: %s; %s, lower_triangular %s\n",
              target.c_str(), huge_pages().c_str(), dtype_name.c_str(), lower ? "on" : "off");
  std::printf("%-7s %-20s | %8s %6s %7s | %8s %6s %7s | %7s\n", "threads", "B x T x C",
              "fwd GB/s", "%triad", "fwd op", "bwd GB/s", "%triad", "bwd op", "triad");
  Progress progress(static_cast<int>(thread_counts.size() * shapes.size()), common.progress);
  for (int threads : thread_counts) {
    at::set_num_threads(threads);
    for (const BlockShape& s : shapes) {
      const double items = double(s.B) * double(s.T) * double(s.C);
      double triad;
      {
        // Three arrays of the forward's bytes in all (8 elements per item).
        const int64_t n = int64_t(8 * items / 3);
        auto a = torch::empty({n}), b = torch::rand({n}), c = torch::rand({n});
        triad = 3.0 * 4 * double(n) / timed([&] { at::add_out(a, b, c, 3.0); }).median / 1e9;
      }
      const at::Tensor A = (torch::rand({s.B, s.T, s.C, 2, 2}) * 0.5).to(dtype);
      const at::Tensor b = torch::randn({s.B, s.T, s.C, 2}).to(dtype);
      const at::Tensor g = torch::randn({s.B, s.T, s.C, 2}).to(dtype);
      ops::PreparedBlockForward pf = ops::prepare_block_forward(A, b, std::nullopt, false, lower);
      pf.params.num_threads = threads;
      const Timing fwd = timed([&] { kernels::cpu::block_scan_forward(pf.params); });
      ops::PreparedBlockBackward pb =
          ops::prepare_block_backward(A, pf.h, std::nullopt, g, std::nullopt, false, lower);
      pb.params.num_threads = threads;
      const Timing bwd = timed([&] { kernels::cpu::block_scan_backward(pb.params); });
      const Timing fwd_op = timed([&] {
        auto r = ops::block_scan_op().call(A, b, std::nullopt, false, lower);
        (void)r;
      });
      const Timing bwd_op = timed([&] {
        auto r = ops::block_scan_backward_op().call(A, pf.h, std::nullopt, g, std::nullopt,
                                                    false, lower);
        (void)r;
      });
      auto record = [&](const char* pass, int elems, const Timing& kernel, const Timing& op) {
        Record r;
        r.bench = "block_scan";
        r.cas = {{"pass", pass}, {"dtype", dtype_name}, {"batch", s.B}, {"T", s.T},
                 {"channels", s.C}, {"lower_triangular", lower}, {"threads", threads},
                 {"cpu_target", target}};
        r.timing = kernel;
        r.bytes_moved = elems * es * items;
        r.roofline_gbps = triad;
        r.extra = {{"pct_roofline", 100 * (*r.bytes_moved / kernel.median / 1e9) / triad},
                   {"op_gbs", *r.bytes_moved / op.median / 1e9}};
        return r;
      };
      Record f = record("forward", 8, fwd, fwd_op), bw = record("backward", 14, bwd, bwd_op);
      out.add(f);
      out.add(bw);
      const double fg = *f.bytes_moved / fwd.median / 1e9, bg = *bw.bytes_moved / bwd.median / 1e9;
      std::ostringstream name;
      name << s.B << " x " << s.T << " x " << s.C;
      std::printf("%-7d %-20s | %8.2f %5.0f%% %7.2f | %8.2f %5.0f%% %7.2f | %7.2f\n", threads,
                  name.str().c_str(), fg, 100 * fg / triad, f.extra["op_gbs"].get<double>(), bg,
                  100 * bg / triad, bw.extra["op_gbs"].get<double>(), triad);
      std::fflush(stdout);
      progress.done("block_scan threads=" + std::to_string(threads) + " " + name.str());
    }
  }
  return 0;
}

}  // namespace seqpar::bench
