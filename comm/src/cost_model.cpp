// The cost model of the cross-rank exchange (seqpar/comm/cost_model.h): fitted parameters per
// backend, their environment overrides, each algorithm's predicted time and the cheapest choice.
#include "seqpar/comm/cost_model.h"

#include <cmath>
#include <cstdlib>
#include <limits>

#include "seqpar/comm/communicator.h"

namespace seqpar::comm {

namespace {

double env_double(const char* name, double fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  double x = std::strtod(v, &end);
  return end == v ? fallback : x;
}

}  // namespace

CostModel cost_model_for(const std::string& backend) {
  auto cost = [](double alpha_us, double gbps) { return AlgoCost{alpha_us * 1e-6, 1.0 / (gbps * 1e9)}; };
  CostModel m;
  if (backend == "mpi") {
    // Fitted on the 2-core reference machine, Open MPI 4.1 shared memory, P = 2
    // (benchmarks/sp_results/sp_cost_model.txt).
    m.tree = cost(6.8, 2.56);
    m.exscan = cost(4.95, 1.42);
    m.allgather = cost(7.15, 3.54);
    m.ring = m.tree;  // the same point-to-point messages
    m.combine_s_per_byte = 1.0 / 4e9;
    // One thread's float32 matrix products of 128 x 128 blocks on the 2-core reference
    // machine (`seqpar-bench exchange --summary matrix` prints it; 87 and 108 GFLOP/s measured).
    m.flops_per_s = 80e9;
  } else if (backend.rfind("c10d", 0) == 0) {
    // gloo over loopback TCP: every message pays a socket round trip.
    m.tree = m.exscan = m.allgather = m.ring = cost(60, 1.5);
    m.combine_s_per_byte = 1.0 / 4e9;
    m.flops_per_s = 80e9;
  } else if (backend == "nccl") {
    // The NVLink parameters of the prediction (docs/sequence_parallel.md).
    m.tree = m.exscan = cost(6, 300);
    m.allgather = cost(6, 300);
    m.ring = cost(6, 300);
    m.combine_s_per_byte = 1.0 / 3000e9;
    m.flops_per_s = 50e12;  // stated: an H100's float32 matrix products
  }
  for (AlgoCost* c : {&m.tree, &m.exscan, &m.allgather, &m.ring}) {
    c->alpha_s = env_double("SEQPAR_SP_ALPHA_US", c->alpha_s * 1e6) * 1e-6;
    c->beta_s_per_byte = 1.0 / (env_double("SEQPAR_SP_BETA_GBPS", 1e-9 / c->beta_s_per_byte) * 1e9);
  }
  m.combine_s_per_byte =
      1.0 / (env_double("SEQPAR_SP_COMBINE_GBPS", 1e-9 / m.combine_s_per_byte) * 1e9);
  m.flops_per_s = env_double("SEQPAR_SP_COMBINE_GFLOPS", m.flops_per_s * 1e-9) * 1e9;
  return m;
}

CostModel cost_model_for(const Communicator& comm) {
  CostModel m = cost_model_for(comm.backend_name());
  for (AlgoCost* c : {&m.tree, &m.exscan, &m.allgather, &m.ring})
    c->alpha_s += comm.injected_latency_s();
  return m;
}

double predict_exchange_seconds(ExchangeAlgo algo, int P, double m, const CostModel& model,
                                double s) {
  return predict_exchange_seconds(algo, P, ExchangeSize{m, s < 0 ? m / 2 : s, 0, 0}, model);
}

double predict_exchange_seconds(ExchangeAlgo algo, int P, const ExchangeSize& size,
                                const CostModel& model) {
  if (P <= 1) return 0.0;
  const double m = size.summary_bytes, s = size.state_bytes;
  const double combine_s = size.combine_flops / model.flops_per_s;
  const double apply_s = size.apply_flops / model.flops_per_s;
  const double rounds = std::ceil(std::log2(static_cast<double>(P)));
  switch (algo) {
    case ExchangeAlgo::kTree:
      // Every round: one send_recv of m bytes, then two compositions (exclusive and
      // inclusive accumulators), each reading 2 and writing 1 summary.
      return rounds * (model.tree.alpha_s + m * model.tree.beta_s_per_byte +
                       3.0 * m * model.combine_s_per_byte + 2.0 * combine_s);
    case ExchangeAlgo::kExscan:
      // Open MPI runs Exscan as log-depth rounds with the user op on the host.
      return rounds * (model.exscan.alpha_s + m * model.exscan.beta_s_per_byte + combine_s);
    case ExchangeAlgo::kAllGather:
      // Latency of a log-depth all-gather, bandwidth of receiving (P-1) summaries, and the
      // fold of up to P-1 predecessors.
      return rounds * model.allgather.alpha_s + (P - 1) * m * model.allgather.beta_s_per_byte +
             (P - 1) * (1.5 * m * model.combine_s_per_byte + combine_s);
    case ExchangeAlgo::kRing:
      // P - 1 hops one after another, each a message of one state and one application of a
      // summary to it (reads the summary and the state, writes a state).
      return (P - 1) * (model.ring.alpha_s + s * model.ring.beta_s_per_byte +
                        (m + 2.0 * s) * model.combine_s_per_byte + apply_s);
    case ExchangeAlgo::kBlelloch:
      // Up and down sweep: every round one message of m bytes and at most one composition;
      // the down-sweep's top round carries only the identity, which is never sent.
      return (2.0 * rounds - 1.0) * (model.tree.alpha_s + m * model.tree.beta_s_per_byte +
                                     1.5 * m * model.combine_s_per_byte + combine_s);
    case ExchangeAlgo::kAuto: break;
  }
  return std::numeric_limits<double>::infinity();
}

ExchangeAlgo choose_exchange_algo(const Communicator& comm, const ExchangeSize& size,
                                  ExchangeAlgo requested, bool exscan_possible) {
  const double state_bytes = size.state_bytes;
  if (requested != ExchangeAlgo::kAuto) return requested;
  if (const char* env = std::getenv("SEQPAR_SP_ALGO")) {
    ExchangeAlgo algo = parse_exchange_algo(env);
    if (algo == ExchangeAlgo::kExscan && !exscan_possible) return ExchangeAlgo::kTree;
    if (algo == ExchangeAlgo::kRing && state_bytes <= 0) return ExchangeAlgo::kTree;
    if (algo != ExchangeAlgo::kAuto) return algo;
  }
  const CostModel model = cost_model_for(comm);
  ExchangeAlgo best = ExchangeAlgo::kTree;
  double best_s = predict_exchange_seconds(best, comm.size(), size, model);
  const double gather_s =
      predict_exchange_seconds(ExchangeAlgo::kAllGather, comm.size(), size, model);
  if (gather_s < best_s) best = ExchangeAlgo::kAllGather, best_s = gather_s;
  if (state_bytes > 0) {
    const double ring_s = predict_exchange_seconds(ExchangeAlgo::kRing, comm.size(), size, model);
    if (ring_s < best_s) best = ExchangeAlgo::kRing, best_s = ring_s;
  }
  if (exscan_possible && comm.offers_pair_exscan()) {
    const double exscan_s =
        predict_exchange_seconds(ExchangeAlgo::kExscan, comm.size(), size, model);
    if (exscan_s < best_s) best = ExchangeAlgo::kExscan, best_s = exscan_s;
  }
  return best;
}

}  // namespace seqpar::comm
