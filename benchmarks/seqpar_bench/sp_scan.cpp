// seqpar-bench sp_scan: forward + backward of the sequence-parallel scan (seqpar::sp::scan) on
// (batch, T / P, channels) float32 per rank, the median over repetitions of the slowest rank.
// --tokens_per_rank fixes each rank's share (a weak-scaling point: run it for several P),
// --tokens fixes the whole sequence (a strong-scaling point); the record's case says which
// ("sweep": "weak" | "strong"), so bench_results.py can draw efficiency against P.
// bytes_moved counts the local scans' traffic (forward reads a, b and writes h; backward reads
// a, h, grad h and writes grad a, grad b: 8 arrays), for GB/s against the streaming roofline.
#include <ATen/Parallel.h>
#include <boost/program_options.hpp>
#include <seqpar/sp.h>
#include <seqpar/train/trainer.h>
#include <torch/torch.h>

#include <sstream>

#include "bench.h"
#include "seqpar/comm/communicator.h"

namespace po = boost::program_options;

namespace seqpar::bench {

int run_sp_scan(const CommonOptions& common, const std::vector<std::string>& args,
                std::shared_ptr<comm::Communicator> world, RecordFile& out) {
  int64_t tokens = 0, tokens_per_rank = 0, channels = 64, batch = 1;
  int threads = 1;
  po::options_description desc("seqpar-bench sp_scan options");
  desc.add_options()
      ("tokens", po::value(&tokens)->default_value(0), "whole sequence (strong scaling)")
      ("tokens_per_rank", po::value(&tokens_per_rank)->default_value(0), "tokens per rank (weak scaling)")
      ("channels", po::value(&channels)->default_value(channels), "channels")
      ("batch", po::value(&batch)->default_value(batch), "sequences")
      ("threads", po::value(&threads)->default_value(threads), "intra-op threads per rank");
  parse_options(desc, args);
  if ((tokens > 0) == (tokens_per_rank > 0)) {
    throw std::invalid_argument("seqpar-bench sp_scan: give exactly one of --tokens (strong "
                                "scaling) and --tokens_per_rank (weak scaling)");
  }
  if (channels < 1 || batch < 1) throw std::invalid_argument("seqpar-bench sp_scan: --channels and --batch must be >= 1");
  at::set_num_threads(threads);
  // As seqpar-train does: the outputs' buffers are reused, not mapped and faulted in afresh.
  train::keep_freed_host_memory();
  const int P = world->size(), r = world->rank();
  const bool weak = tokens_per_rank > 0;
  const int64_t total = weak ? tokens_per_rank * P : tokens;
  const int64_t begin = total * r / P, end = total * (r + 1) / P, T = end - begin;
  const int reps = common.reps > 0 ? common.reps : (common.quick ? 3 : 10);
  torch::manual_seed(r + 1);
  auto a = torch::rand({batch, T, channels}).mul_(0.1).add_(0.9).requires_grad_(true);
  auto b = torch::randn({batch, T, channels}).requires_grad_(true);
  auto g = torch::randn({batch, T, channels});
  Progress progress(1, common.progress && r == 0);
  const Timing t = time_slowest(*world, reps, [&] {
    auto [h, last] = seqpar::sp::scan(a, b, std::nullopt, false, world);
    torch::autograd::backward({h}, {g});
    a.mutable_grad().reset();
    b.mutable_grad().reset();
  });
  Record rec;
  rec.bench = "sp_scan";
  rec.cas = {{"sweep", weak ? "weak" : "strong"}, {"tokens", total},
             {"tokens_per_rank", total / P}, {"channels", channels}, {"batch", batch},
             {"dtype", "float32"}, {"threads", threads}, {"P", P}};
  rec.timing = t;
  rec.bytes_moved = 8.0 * 4.0 * static_cast<double>(batch * (total / P) * channels);
  out.add(rec);
  std::ostringstream what;
  what << "sp_scan " << (weak ? "weak" : "strong") << " T=" << total << " P=" << P << ": "
       << t.median * 1e3 << " ms forward + backward";
  progress.done(what.str());
  return 0;
}

}  // namespace seqpar::bench
