// The alpha-beta cost model of the cross-rank exchange: per-backend parameters, the predicted
// time of each algorithm (exchange_algo.h) for an exchange of a given size, and the choice of
// the cheapest. It needs no tensor: a summary kind states its size as an ExchangeSize
// (summary_kind.h), and resolve_exchange_algo (rank_scan.h) joins the two.
#pragma once

#include <string>

#include "seqpar/comm/exchange_algo.h"

namespace seqpar::comm {

class Communicator;

// Alpha-beta model of one exchange, per algorithm: a step costs alpha + bytes * beta, where
//   tree, exscan: ceil(log2 P) steps of m bytes;  allgather: ceil(log2 P) * alpha + (P-1) m beta;
//   ring: P - 1 steps of s bytes (one state), one after another;
//   blelloch: 2 ceil(log2 P) - 1 steps of m bytes (the top of the down-sweep sends nothing).
// Composition adds combine_s_per_byte per byte of the summaries it reads and writes, and, for
// kinds whose combine is a matrix product, its floating-point operations at flops_per_s.
struct AlgoCost {
  double alpha_s = 20e-6;
  double beta_s_per_byte = 1.0 / 10e9;
};
struct CostModel {
  AlgoCost tree, exscan, allgather, ring;
  double combine_s_per_byte = 1.0 / 20e9;
  double flops_per_s = 20e9;
};

// What one exchange moves and computes (SummaryKind::exchange_size gives it for a summary).
struct ExchangeSize {
  double summary_bytes = 0;  // m
  double state_bytes = 0;    // s; 0 when the caller needs whole summaries (no ring)
  double combine_flops = 0;  // arithmetic of one combine beyond its memory traffic
  double apply_flops = 0;    // of applying a summary to a state
};

// The model used for `backend` ("mpi", "nccl", "c10d:gloo", ...): values fitted by
// `seqpar-bench exchange` and benchmarks/sp_cost_model.py (docs/sequence_parallel.md).
// SEQPAR_SP_ALPHA_US and SEQPAR_SP_BETA_GBPS override alpha and beta of every algorithm,
// SEQPAR_SP_COMBINE_GBPS the composition speed, SEQPAR_SP_COMBINE_GFLOPS its arithmetic rate.
CostModel cost_model_for(const std::string& backend);
// The model for this communicator: its backend's, with the latency it injects on purpose
// (emulated networks, Communicator::injected_latency_s) added to every algorithm's alpha.
CostModel cost_model_for(const Communicator& comm);

// Predicted seconds of one exclusive scan of P summaries of `summary_bytes` (= m) each; the
// ring's hops carry one state of `state_bytes` (s; m / 2 when not given: B or E of a K = V
// summary).
double predict_exchange_seconds(ExchangeAlgo algo, int P, double summary_bytes,
                                const CostModel& model, double state_bytes = -1);
double predict_exchange_seconds(ExchangeAlgo algo, int P, const ExchangeSize& size,
                                const CostModel& model);

// The cost model's choice for an exchange of `size`: requested unless kAuto; kAuto honours
// SEQPAR_SP_ALGO, then takes the cheapest predicted algorithm the communicator offers. With
// exscan_possible = false (a kind MPI_Exscan cannot combine) kAuto never picks kExscan, nor
// on a communicator that does not offer it (Communicator::offers_pair_exscan); with
// size.state_bytes = 0 (the caller needs whole summaries) never kRing; an environment choice
// that is not possible runs kTree.
ExchangeAlgo choose_exchange_algo(const Communicator& comm, const ExchangeSize& size,
                                  ExchangeAlgo requested, bool exscan_possible);

}  // namespace seqpar::comm
