// seqpar-bench exchange: the cross-rank exclusive scan of one summary per rank, for the
// diagonal (A, B) and the matrix (M, E) kinds and every algorithm (tree, all-gather-and-fold,
// ring, Blelloch, MPI exscan where it applies, and auto, whose choice is recorded), each next to
// the alpha-beta model's prediction for this backend (comm::cost_model_for plus any injected
// latency). Measures comm::rank_entering_state, what the sequence-parallel ops call: the
// median over repetitions of the slowest rank. With matrix summaries it also measures one
// thread's float32 matrix-product rate (16 x 128x128 @ 128x128), which the model's combine cost
// for (M, E) summaries assumes (CostModel::flops_per_s), and records it as extra.matmul_gflops.
// Replaced sp_exchange_bench and matrix_exchange_bench.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <boost/program_options.hpp>

#include <chrono>
#include <cstdio>
#include <sstream>

#include "bench.h"
#include "seqpar/comm/rank_scan.h"

namespace po = boost::program_options;

namespace seqpar::bench {
namespace {

struct Case {
  std::string summary;  // diagonal | matrix
  int64_t a = 0, b = 0, c = 0;  // diagonal: elements; matrix: H, K, V
};

comm::SummaryParts make_summary(const Case& c) {
  if (c.summary == "diagonal") {
    // float64: what sp_scan exchanges for float32 inputs (the accumulation precision).
    return {at::full({c.a}, 0.5, at::kDouble), at::rand({c.a}, at::kDouble)};
  }
  const at::Tensor M = at::eye(c.b, at::kFloat).expand({c.a, c.b, c.b}).contiguous() * 0.5;
  return {M, at::rand({c.a, c.b, c.c}, at::kFloat)};
}

// One thread's float32 matrix products of 128 x 128 blocks, GFLOP/s (median of 5).
double matmul_gflops() {
  const at::Tensor a = at::rand({16, 128, 128}), b = at::rand({128, 128});
  at::matmul(a, b);
  std::vector<double> s;
  for (int i = 0; i < 5; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int j = 0; j < 20; ++j) at::matmul(a, b);
    s.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return 20 * 2.0 * 16 * 128 * 128 * 128 / summarize(s).median / 1e9;
}

std::string describe(const Case& c) {
  std::ostringstream os;
  if (c.summary == "diagonal") os << "diagonal D=" << c.a;
  else os << "matrix H=" << c.a << " K=" << c.b << " V=" << c.c;
  return os.str();
}

}  // namespace

int run_exchange(const CommonOptions& common, const std::vector<std::string>& args,
                 std::shared_ptr<comm::Communicator> world_ptr, RecordFile& out) {
  comm::Communicator& world = *world_ptr;
  std::string summaries = "diagonal,matrix";
  po::options_description desc("seqpar-bench exchange options");
  desc.add_options()("summary", po::value(&summaries)->default_value(summaries),
                     "diagonal, matrix or both (comma-separated)");
  parse_options(desc, args);
  at::set_num_threads(1);

  std::vector<Case> cases;
  if (summaries.find("diagonal") != std::string::npos) {
    for (int64_t D : common.quick ? std::vector<int64_t>{1024, 65536}
                                  : std::vector<int64_t>{256, 4096, 65536, 1 << 20})
      cases.push_back({"diagonal", D, 0, 0});
  }
  if (summaries.find("matrix") != std::string::npos) {
    cases.push_back({"matrix", 4, 64, 64});
    if (!common.quick) cases.push_back({"matrix", 16, 128, 128});
  }
  if (cases.empty()) throw std::invalid_argument("seqpar-bench exchange: --summary must name diagonal and/or matrix, got '" + summaries + "'");
  std::vector<comm::ExchangeAlgo> algos{comm::ExchangeAlgo::kTree, comm::ExchangeAlgo::kAllGather,
                                        comm::ExchangeAlgo::kRing, comm::ExchangeAlgo::kBlelloch,
                                        comm::ExchangeAlgo::kExscan, comm::ExchangeAlgo::kAuto};
  const bool mpi_direct = world.offers_pair_exscan();
  const int P = world.size(), reps = common.reps > 0 ? common.reps : (common.quick ? 5 : 20);
  const comm::CostModel model = comm::cost_model_for(world);
  int total = 0;
  for (const Case& c : cases)
    for (auto algo : algos)
      total += !(algo == comm::ExchangeAlgo::kExscan && (c.summary != "diagonal" || !mpi_direct));
  const bool matrix = summaries.find("matrix") != std::string::npos;
  const double gflops = matrix ? matmul_gflops() : 0;
  if (matrix && world.rank() == 0)
    std::printf("matrix products here: %.1f GFLOP/s (one thread, 16 x 128x128 @ 128x128); the "
                "model assumes %.1f\n", gflops, model.flops_per_s / 1e9);
  Progress progress(total, common.progress && world.rank() == 0);
  for (const Case& c : cases) {
    const comm::SummaryParts own = make_summary(c);
    const comm::SummaryKind& kind =
        c.summary == "diagonal" ? comm::diagonal_summary() : comm::matrix_summary();
    const comm::ExchangeSize size = kind.exchange_size(own);
    for (auto algo : algos) {
      if (algo == comm::ExchangeAlgo::kExscan && (c.summary != "diagonal" || !mpi_direct)) continue;
      const Timing t = time_slowest(world, reps, [&] {
        comm::rank_entering_state(world, kind, own, /*reverse=*/false, algo);
      });
      Record r;
      r.bench = "exchange";
      r.cas = {{"summary", c.summary}, {"algo", comm::exchange_algo_name(algo)},
               {"bytes", size.summary_bytes}, {"state_bytes", size.state_bytes},
               {"dtype", c.summary == "diagonal" ? "float64" : "float32"}, {"P", P}};
      if (c.summary == "diagonal") r.cas["elements"] = c.a;
      else r.cas.update({{"H", c.a}, {"K", c.b}, {"V", c.c}});
      if (c.summary == "matrix") r.extra["matmul_gflops"] = gflops;
      r.timing = t;
      comm::ExchangeAlgo predicted_algo = algo;
      if (algo == comm::ExchangeAlgo::kAuto) {
        predicted_algo = comm::resolve_exchange_algo(world, kind, own, algo);
        r.extra["auto_choice"] = comm::exchange_algo_name(predicted_algo);
      }
      r.predicted = comm::predict_exchange_seconds(predicted_algo, P, size, model);
      out.add(r);
      std::ostringstream what;
      what.precision(1);
      what << std::fixed << "exchange " << comm::exchange_algo_name(algo) << " " << describe(c)
           << " P=" << P << ": " << t.median * 1e6 << " us (model " << *r.predicted * 1e6
           << " us)";
      progress.done(what.str());
    }
  }
  return 0;
}

}  // namespace seqpar::bench
