// seqpar-bench local_scan: one process's scan throughput, forward and backward GB/s of
// torch.ops.seqpar.scan / scan_backward against the triad bandwidth measured in the same run
// with the same thread count. Replaces cpu_scan_bench with the same method, so its figures
// stay comparable:
//   - "kernel" runs kernels/cpu on preallocated outputs (what the targets are stated for);
//     "op" (extra.op_gbs) calls the registered op, which also allocates its outputs (a fresh
//     64 MiB CPU tensor costs page faults on first touch). The record's timing is the kernel's.
//   - bytes_moved = streams x element size x elements (docs/design.md section 1): forward reads
//     a, b and writes h (3 streams); backward reads a, h, grad_h and writes grad_a, grad_b (5).
//     roofline_gbps is triad a = b + 3 c through at::add_out, 3 streams (STREAM's convention).
//   - Each figure: one warm-up, then --reps timed runs, each after touching a 64 MiB buffer so
//     no run starts from warm caches; the median is what cpu_scan_bench printed.
//   - Forward baselines in the same run: a naive per-step LibTorch loop on the first
//     --naive-steps steps (its cost per step is constant, so GB/s on a prefix is its GB/s),
//     and the log-space formulation h = P cumsum(b / P), P = exp(cumsum(log a)) (a speed
//     baseline only: valid for short T and a > 0).
// Shapes: (B*D, T) with 2^--log2-elements elements but T >= 2^14, channels-contiguous
// (1, T, B*D) or time-contiguous ((B*D, 1, T) transposed to (B*D, T, 1)).
// It measures one process's memory bandwidth, so it refuses to run with more than one rank
// (idle ranks spinning in an MPI wait would take cores from the measured threads).
// The options keep cpu_scan_bench's names (--log2-elements, --naive-steps); --log2_elements
// and --naive_steps, the other subcommands' spelling, are accepted too.
#include <ATen/Parallel.h>
#include <boost/program_options.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <sstream>
#include <thread>

#include "bench.h"
#include "flushed_timer.h"
#include "seqpar/comm/communicator.h"
#include "ops/kernel_params.h"
#include "ops/op_handles.h"
#include "seqpar/kernels/cpu_scan.h"
#include "seqpar/scan.h"

namespace po = boost::program_options;

namespace seqpar::bench {
namespace {

struct Shape {
  int64_t bd, T;
  bool time_contiguous;
};

// Random values of `dtype` in the benchmark's layout (a in [0.5, 1), b standard normal).
at::Tensor make_sequence(const Shape& s, at::ScalarType dtype, bool coefficient) {
  const std::vector<int64_t> shape =
      s.time_contiguous ? std::vector<int64_t>{s.bd, 1, s.T} : std::vector<int64_t>{1, s.T, s.bd};
  at::Tensor x = coefficient ? torch::rand(shape) * 0.5 + 0.5 : torch::randn(shape);
  x = x.to(dtype);
  return s.time_contiguous ? x.transpose(1, 2) : x;
}

// cpu_scan_bench's spelling (dashes) for every option name; underscores are accepted.
std::vector<std::string> dashed(std::vector<std::string> args) {
  for (std::string& a : args)
    if (a.rfind("--", 0) == 0)
      std::replace(a.begin() + 2, std::find(a.begin(), a.end(), '='), '_', '-');
  return args;
}

}  // namespace

int run_local_scan(const CommonOptions& common, const std::vector<std::string>& args,
                   std::shared_ptr<comm::Communicator> world, RecordFile& out) {
  std::string dtype_name = "float32";
  int64_t naive_steps = 2048, log2_elems = 0;
  std::vector<int> thread_counts;
  std::vector<int64_t> bds;
  po::options_description desc("seqpar-bench local_scan options");
  desc.add_options()
      ("dtype", po::value(&dtype_name)->default_value(dtype_name),
       "float32, bfloat16, float16 or complex64")
      ("log2-elements", po::value(&log2_elems)->default_value(0),
       "elements per input tensor = 2^this, with T >= 2^14 (0: 24, or 18 with --quick)")
      ("naive-steps", po::value(&naive_steps)->default_value(naive_steps),
       "time steps of the naive loop baseline")
      ("threads", po::value(&thread_counts)->multitoken(),
       "thread counts to run (default: 1 and all hardware threads; --quick: the first only)")
      ("bd", po::value(&bds)->multitoken(),
       "B*D values (sequences per input) to run (default: 1 16 256 4096; --quick: 1 256)");
  parse_options(desc, dashed(args));
  if (world->size() > 1) {
    throw std::invalid_argument("it measures one process's memory bandwidth: run it without mpirun "
                                "(or with -np 1), not with " + std::to_string(world->size()) + " ranks");
  }
  if (log2_elems == 0) log2_elems = common.quick ? 18 : 24;
  const std::map<std::string, at::ScalarType> dtypes{
      {"float32", at::kFloat}, {"bfloat16", at::kBFloat16}, {"float16", at::kHalf},
      {"complex64", at::kComplexFloat}};
  if (!dtypes.count(dtype_name))
    throw std::invalid_argument("--dtype must be float32, bfloat16, float16 or complex64, got '" +
                                dtype_name + "'");
  if (log2_elems < 10 || log2_elems > 28 || naive_steps < 1)
    throw std::invalid_argument("need 10 <= --log2-elements <= 28 and --naive-steps >= 1");
  const int hw = std::max(1u, std::thread::hardware_concurrency());
  if (thread_counts.empty()) thread_counts = hw > 1 ? std::vector<int>{1, hw} : std::vector<int>{1};
  if (common.quick) thread_counts.resize(1);
  for (int t : thread_counts)
    if (t < 1) throw std::invalid_argument("--threads must be >= 1");
  if (bds.empty()) bds = common.quick ? std::vector<int64_t>{1, 256} : std::vector<int64_t>{1, 16, 256, 4096};
  for (int64_t bd : bds)
    if (bd < 1 || bd > (int64_t(1) << log2_elems))
      throw std::invalid_argument("--bd must be in [1, 2^--log2-elements]");
  const at::ScalarType dtype = dtypes.at(dtype_name);
  const double es = double(c10::elementSize(dtype));  // bytes per element of every stream
  const int64_t n = int64_t(1) << log2_elems;
  FlushedTimer timed(common.reps_or(5, 2));
  torch::manual_seed(0);
  torch::NoGradGuard no_grad;
  // The CPU engine's run-time target (SEQPAR_CPU_CAPABILITY caps it).
  const std::string target = kernels::cpu::capability();
  std::printf("CPU engine target: %s; transparent huge pages: %s\n", target.c_str(),
              huge_pages().c_str());
  std::printf("%-7s %-6s %-9s %-5s | %8s %6s %7s | %8s %6s %7s | %9s %9s | %7s | %8s %6s\n", "threads",
              "B*D", "T", "lay", "fwd GB/s", "%triad", "fwd op", "bwd GB/s", "%triad", "bwd op", "naive",
              "log-space", "triad", "sum GB/s", "%triad");
  // A progress line per (threads, B*D, layout), after its table row.
  Progress progress(static_cast<int>(thread_counts.size() * bds.size() * 2), common.progress);

  for (int threads : thread_counts) {
    at::set_num_threads(threads);
    double triad;
    {
      auto a = torch::empty({n}), b = torch::rand({n}), c = torch::rand({n});
      triad = 3.0 * 4 * n / timed([&] { at::add_out(a, b, c, 3.0); }).median / 1e9;
    }
    for (int64_t bd : bds) {
      for (bool tc : {false, true}) {
        // (B*D, T) from (1, 2^24) to (4096, 2^14): 2^24 elements, but at least 2^14 steps.
        const Shape s{bd, std::max<int64_t>(n / bd, int64_t(1) << 14), tc};
        const double elems = double(bd * s.T);
        const at::Tensor a = make_sequence(s, dtype, true), b = make_sequence(s, dtype, false);
        const Timing fwd_op = timed([&] { auto r = seqpar::scan(a, b); (void)r; });
        // The kernels on outputs allocated once, with the parameters the op itself would pass
        // (src/ops/kernel_params.h).
        ops::PreparedForward pf = ops::prepare_forward(a, b, std::nullopt, /*reverse=*/false);
        pf.params.num_threads = threads;
        const Timing fwd = timed([&] { kernels::cpu::scan_forward(pf.params); });
        const at::Tensor& h = pf.h;
        const at::Tensor g = make_sequence(s, dtype, false);
        ops::PreparedBackward pb =
            ops::prepare_backward(a, h, std::nullopt, g, std::nullopt, /*reverse=*/false);
        pb.params.num_threads = threads;
        const Timing bwd = timed([&] { kernels::cpu::scan_backward(pb.params); });
        // The summary (A, B) of every sequence, sequence parallelism's first local pass: reads
        // a and b once.
        ops::PreparedSummary ps = ops::prepare_summary(a, b, /*reverse=*/false);
        ps.params.num_threads = threads;
        const Timing sum = timed([&] { kernels::cpu::scan_summary(ps.params); });
        const Timing bwd_op = timed([&] {
          auto r = ops::scan_backward_op().call(a, h, std::nullopt, g, std::nullopt, false,
                                                std::nullopt);
          (void)r;
        });
        const int64_t steps = std::min(naive_steps, s.T);
        auto ap = a.narrow(1, 0, steps), bp = b.narrow(1, 0, steps);
        const Timing naive = timed(
            [&] {
              auto hh = torch::zeros({a.size(0), a.size(2)}, a.options());
              auto outp = torch::empty_like(ap);
              for (int64_t t = 0; t < steps; ++t) {
                hh = ap.select(1, t) * hh + bp.select(1, t);
                outp.select(1, t).copy_(hh);
              }
            },
            std::max(1, timed.reps() / 2));
        const Timing logspace = timed([&] {
          auto p = torch::exp(torch::cumsum(torch::log(a), 1));
          auto r = p * torch::cumsum(b / p, 1);
          (void)r;
        });

        // op: the registered op's timing, where one was taken.
        auto record = [&](const char* pass, int streams, const Timing& kernel, const Timing* op) {
          Record r;
          r.bench = "local_scan";
          r.cas = {{"pass", pass}, {"dtype", dtype_name}, {"layout", tc ? "time" : "channels"},
                   {"batch_x_channels", bd}, {"T", s.T}, {"threads", threads}, {"cpu_target", target}};
          r.timing = kernel;
          r.bytes_moved = streams * es * elems;
          r.roofline_gbps = triad;
          r.extra = {{"pct_roofline", 100 * (*r.bytes_moved / kernel.median / 1e9) / triad}};
          if (op) r.extra["op_gbs"] = *r.bytes_moved / op->median / 1e9;
          return r;
        };
        const double naive_gbs = 3 * es * double(steps * bd) / naive.median / 1e9;
        const double log_gbs = 3 * es * elems / logspace.median / 1e9;
        Record f = record("forward", 3, fwd, &fwd_op), bw = record("backward", 5, bwd, &bwd_op);
        Record sm = record("summary", 2, sum, nullptr);
        // The baselines compute the forward scan, so they sit beside the forward record.
        f.extra.update(
            {{"naive_loop_gbs", naive_gbs}, {"naive_loop_steps", steps}, {"log_space_gbs", log_gbs}});
        out.add(f);
        out.add(bw);
        out.add(sm);
        const double fwd_gbs = *f.bytes_moved / fwd.median / 1e9;
        const double bwd_gbs = *bw.bytes_moved / bwd.median / 1e9;
        const double sum_gbs = *sm.bytes_moved / sum.median / 1e9;
        std::printf("%-7d %-6lld %-9lld %-5s | %8.2f %5.0f%% %7.2f | %8.2f %5.0f%% %7.2f | %9.3f %9.2f | "
                    "%7.2f | %8.2f %5.0f%%\n",
                    threads, (long long)bd, (long long)s.T, tc ? "time" : "chan", fwd_gbs,
                    100 * fwd_gbs / triad, f.extra["op_gbs"].get<double>(), bwd_gbs, 100 * bwd_gbs / triad,
                    bw.extra["op_gbs"].get<double>(), naive_gbs, log_gbs, triad, sum_gbs,
                    100 * sum_gbs / triad);
        std::fflush(stdout);
        std::ostringstream what;
        what << "local_scan threads=" << threads << " B*D=" << bd << " " << (tc ? "time" : "channels")
             << ": forward and backward";
        progress.done(what.str());
      }
    }
  }
  return 0;
}

}  // namespace seqpar::bench
