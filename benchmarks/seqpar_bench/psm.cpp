// seqpar-bench psm: what a prefix-scannable layer (PsmBlock, seqpar/models/psm_block.h) costs on
// one rank (rank 0 runs it; other ranks wait).
//   psm_inference  one token at a time through PsmBlock::step (the binary counter): at
//                  2^k - c tokens (every bit of the chunk count set: the most roots) and at 2^k
//                  (one root), the roots held and their bytes, Agg calls per chunk so far, and
//                  the time per token over the window since the previous mark;
//   psm_train      forward + backward over n chunks (the static Blelloch scan): time per step
//                  and the sequential Agg calls (one batched call per tree level, counted
//                  through a wrapped aggregation).
#include <boost/program_options.hpp>
#include <seqpar/models/psm_block.h>
#include <seqpar/train/trainer.h>

#include <chrono>
#include <cstdio>
#include <sstream>

#include "bench.h"
#include "seqpar/comm/communicator.h"

namespace po = boost::program_options;

namespace seqpar::bench {

int run_psm(const CommonOptions& common, const std::vector<std::string>& args,
            std::shared_ptr<comm::Communicator> world_ptr, RecordFile& out) {
  comm::Communicator& world = *world_ptr;
  models::PsmBlockOptions o;
  int64_t max_tokens = 0, max_chunks = 0;
  int threads = 1;
  po::options_description desc("seqpar-bench psm options");
  desc.add_options()
      ("d_model", po::value(&o.d_model)->default_value(64), "state width")
      ("heads", po::value(&o.heads)->default_value(4), "attention heads of Agg and Inf")
      ("chunk", po::value(&o.chunk_size)->default_value(16), "tokens per chunk")
      ("max_tokens", po::value(&max_tokens)->default_value(0), "inference: tokens streamed (0: 4096 quick, 65536)")
      ("max_chunks", po::value(&max_chunks)->default_value(0), "training: largest n (0: 256 quick, 4096)")
      ("threads", po::value(&threads)->default_value(threads), "intra-op threads");
  parse_options(desc, args);
  if (max_tokens <= 0) max_tokens = common.quick ? 4096 : 65536;
  if (max_chunks <= 0) max_chunks = common.quick ? 256 : 4096;
  const int reps = common.reps > 0 ? common.reps : 3;
  o.mlp_hidden = 2 * o.d_model;
  if (world.rank() != 0) {
    world.barrier();
    return 0;
  }
  using Clock = std::chrono::steady_clock;
  // As seqpar-train does: large activation buffers are reused instead of mapped afresh.
  train::keep_freed_host_memory();
  torch::set_num_threads(threads);
  torch::manual_seed(1);
  models::PsmBlock block(o);
  nlohmann::json shape{{"d_model", o.d_model}, {"heads", o.heads}, {"chunk", o.chunk_size},
                       {"threads", threads}};
  std::vector<int64_t> marks;
  for (int64_t p = 1024; p <= max_tokens; p *= 2) marks.insert(marks.end(), {p - o.chunk_size, p});
  int sizes = 0;
  for (int64_t n = 16; n <= max_chunks; n *= 4) ++sizes;
  Progress progress(static_cast<int>(marks.size()) + sizes, common.progress);

  {
    torch::NoGradGuard no_grad;
    block->eval();
    models::PsmState state;
    auto x = torch::randn({1, max_tokens, o.d_model});
    size_t next = 0;
    int64_t window_start = 0;
    auto t0 = Clock::now();
    for (int64_t t = 0; t < max_tokens && next < marks.size(); ++t) {
      block->step(x.select(1, t), state);
      if (t + 1 != marks[next]) continue;
      const double s = std::chrono::duration<double>(Clock::now() - t0).count() /
                       static_cast<double>(t + 1 - window_start);
      const auto& c = *state.counter;
      Record r;
      r.bench = "psm_inference";
      r.cas = shape;
      r.cas["tokens"] = t + 1;
      r.timing = {s, s, s, 1};
      r.extra = {{"chunks", c.chunks()}, {"roots", c.roots()}, {"stored_bytes", c.stored_bytes()},
                 {"agg_calls", c.agg_calls()},
                 {"agg_calls_per_chunk", c.chunks() ? double(c.agg_calls()) / c.chunks() : 0.0}};
      out.add(r);
      std::ostringstream what;
      what << "psm inference " << t + 1 << " tokens: " << c.roots() << " roots, "
           << c.stored_bytes() << " bytes, " << r.extra["agg_calls_per_chunk"].get<double>()
           << " Agg calls per chunk, " << s * 1e6 << " us per token";
      progress.done(what.str());
      window_start = t + 1;
      ++next;
      t0 = Clock::now();
    }
  }

  block->train();
  int64_t agg_calls = 0;
  models::SequenceBackend counted = models::local_backend();
  counted.psm_scan = [&](const at::Tensor& chunks, const psm::Aggregate& agg, bool) {
    psm::Aggregate wrapped = agg;
    wrapped.fn = [&agg_calls, fn = agg.fn](const at::Tensor& l, const at::Tensor& r) {
      ++agg_calls;
      return fn(l, r);
    };
    return psm::static_scan(chunks, wrapped);
  };
  for (int64_t n = 16; n <= max_chunks; n *= 4) {
    const int64_t T = n * o.chunk_size;
    auto x = torch::randn({1, T, o.d_model}, torch::requires_grad());
    std::vector<double> seconds;
    for (int r = 0; r <= reps; ++r) {  // the first is a warm-up
      agg_calls = 0;
      const auto t0 = Clock::now();
      block->forward(x, counted).square().mean().backward();
      if (r > 0) seconds.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
      block->zero_grad();
    }
    Record r;
    r.bench = "psm_train";
    r.cas = shape;
    r.cas.update({{"chunks", n}, {"tokens", T}});
    r.timing = summarize(seconds);
    r.extra = {{"agg_calls", agg_calls}, {"us_per_token", 1e6 * r.timing.median / T}};
    out.add(r);
    std::ostringstream what;
    what << "psm train n=" << n << " (" << T << " tokens): " << r.timing.median * 1e3
         << " ms per step, " << agg_calls << " sequential Agg calls";
    progress.done(what.str());
  }
  world.barrier();
  return 0;
}

}  // namespace seqpar::bench
