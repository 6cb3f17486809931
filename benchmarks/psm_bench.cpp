// psm_bench: what a prefix-scannable layer (PsmBlock, seqpar/models/psm_block.h) costs.
//   inference  one token at a time through PsmBlock::step (the binary counter): at each
//              power-of-two length, the roots held and their bytes, Agg calls per chunk so
//              far, and the time per token over the window since the previous length;
//   training   forward + backward of PsmBlock over n chunks (the static Blelloch scan): time
//              per step and per token, and the sequential Agg calls it makes (one batched call
//              per tree level, counted through a wrapped aggregation).
// Prints two tables and writes JSON (--json PATH). Single process; threads from --threads.
//
//   psm_bench [--d_model 64] [--heads 4] [--chunk 16] [--max_tokens 32768]
//             [--max_chunks 4096] [--repeats 3] [--threads 2] [--json out.json]
#include <seqpar/models/psm_block.h>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <vector>

namespace po = boost::program_options;
using Clock = std::chrono::steady_clock;
using seqpar::models::PsmBlock;
using seqpar::models::PsmBlockOptions;

int main(int argc, char** argv) {
  PsmBlockOptions o;
  int64_t max_tokens = 32768, max_chunks = 4096, repeats = 3;
  int threads = 2;
  std::string json_path;
  po::options_description desc("psm_bench options");
  desc.add_options()("help,h", "print this help")
      ("d_model", po::value(&o.d_model)->default_value(64), "state width")
      ("heads", po::value(&o.heads)->default_value(4), "attention heads of Agg and Inf")
      ("chunk", po::value(&o.chunk_size)->default_value(16), "tokens per chunk")
      ("max_tokens", po::value(&max_tokens)->default_value(max_tokens), "inference: tokens streamed")
      ("max_chunks", po::value(&max_chunks)->default_value(max_chunks), "training: largest n")
      ("repeats", po::value(&repeats)->default_value(repeats), "training: timed steps per n (median)")
      ("threads", po::value(&threads)->default_value(threads), "intra-op threads")
      ("json", po::value(&json_path), "write the results here");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << "psm_bench: " << e.what() << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  o.mlp_hidden = 2 * o.d_model;
  torch::set_num_threads(threads);
  torch::manual_seed(1);
  PsmBlock block(o);
  block->eval();
  nlohmann::json out{{"d_model", o.d_model}, {"heads", o.heads}, {"chunk", o.chunk_size},
                     {"threads", threads}};

  // --- inference -------------------------------------------------------------------------
  std::printf("inference (batch 1, one token per step)\n%10s %8s %8s %12s %14s %12s\n", "tokens",
              "chunks", "roots", "root bytes", "Agg / chunk", "us / token");
  {
    torch::NoGradGuard no_grad;
    seqpar::models::PsmState state;
    auto x = torch::randn({1, max_tokens, o.d_model});
    // Report at 2^k - c tokens (2^k / c - 1 chunks: every bit set, the most roots) and at 2^k
    // (one root).
    std::vector<int64_t> marks;
    for (int64_t p = 1024; p <= max_tokens; p *= 2) marks.insert(marks.end(), {p - o.chunk_size, p});
    size_t next_mark = 0;
    int64_t window_start = 0;
    auto t0 = Clock::now();
    for (int64_t t = 0; t < max_tokens; ++t) {
      block->step(x.select(1, t), state);
      if (next_mark < marks.size() && t + 1 == marks[next_mark]) {
        const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count() /
                          static_cast<double>(t + 1 - window_start);
        const auto& c = *state.counter;
        const double per_chunk = c.chunks() ? static_cast<double>(c.agg_calls()) / c.chunks() : 0;
        std::printf("%10lld %8lld %8lld %12lld %14.3f %12.1f\n", static_cast<long long>(t + 1),
                    static_cast<long long>(c.chunks()), static_cast<long long>(c.roots()),
                    static_cast<long long>(c.stored_bytes()), per_chunk, us);
        out["inference"].push_back({{"tokens", t + 1}, {"chunks", c.chunks()},
                                    {"roots", c.roots()}, {"stored_bytes", c.stored_bytes()},
                                    {"agg_calls", c.agg_calls()},
                                    {"agg_calls_per_chunk", per_chunk},
                                    {"us_per_token", us}});
        window_start = t + 1;
        ++next_mark;
        t0 = Clock::now();
      }
    }
  }

  // --- training --------------------------------------------------------------------------
  std::printf("\ntraining (batch 1, forward + backward)\n%8s %10s %12s %14s %12s\n", "chunks",
              "tokens", "ms / step", "us / token", "Agg calls");
  block->train();
  auto local = seqpar::models::local_backend();
  int64_t agg_calls = 0;
  seqpar::models::SequenceBackend counted = local;
  counted.psm_scan = [&](const at::Tensor& chunks, const seqpar::psm::Aggregate& agg) {
    seqpar::psm::Aggregate wrapped = agg;
    wrapped.fn = [&agg_calls, fn = agg.fn](const at::Tensor& l, const at::Tensor& r) {
      ++agg_calls;
      return fn(l, r);
    };
    return seqpar::psm::static_scan(chunks, wrapped);
  };
  for (int64_t n = 16; n <= max_chunks; n *= 4) {
    const int64_t T = n * o.chunk_size;
    auto x = torch::randn({1, T, o.d_model}, torch::requires_grad());
    std::vector<double> ms;
    for (int64_t r = 0; r <= repeats; ++r) {  // the first is a warm-up
      agg_calls = 0;
      const auto t0 = Clock::now();
      block->forward(x, counted).square().mean().backward();
      const double elapsed = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      if (r > 0) ms.push_back(elapsed);
      block->zero_grad();
    }
    std::sort(ms.begin(), ms.end());
    const double median = ms[ms.size() / 2];
    std::printf("%8lld %10lld %12.1f %14.2f %12lld\n", static_cast<long long>(n),
                static_cast<long long>(T), median, 1e3 * median / T,
                static_cast<long long>(agg_calls));
    out["training"].push_back({{"chunks", n}, {"tokens", T}, {"ms_per_step", median},
                               {"ms_min", ms.front()}, {"ms_max", ms.back()},
                               {"agg_calls", agg_calls}});
  }
  if (!json_path.empty()) std::ofstream(json_path) << out.dump(2) << "\n";
  return 0;
}
