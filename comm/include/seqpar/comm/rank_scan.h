// Cross-rank exclusive scan of propagator summaries (docs/design.md section 2, step 2).
//
// Each rank r holds S_r = (A_r, B_r), D elements each (any shape, same on all ranks). The
// operator is composition, later after earlier: (A2, B2) o (A1, B1) = (A2*A1, A2*B1 + B2).
// Forward rank order returns E_r = S_{r-1} o ... o S_0 on rank r (identity (1, 0) on rank 0);
// reverse rank order returns E_r = S_{r+1} o ... o S_{P-1} (identity on rank P-1). The state
// entering rank r is then A(E_r) * h0 + B(E_r).
//
// Algorithms (P ranks, m = 2*D*element_size bytes per summary):
//   kTree       recursive doubling over send_recv: ceil(log2 P) rounds, each rank sends and
//               receives m bytes per round and composes once. Partners beyond the ends are
//               missing and act as the identity, so any P works.
//   kExscan     MPI_Iexscan with a user-defined non-commutative MPI_Op over (A_i, B_i) pairs
//               (MPI backend only). Reverse order runs on a rank-reversed duplicate
//               communicator.
//   kAllGather  one all_gather of every summary ((P-1)*m bytes received per rank), then each
//               rank folds its predecessors locally.
// kAuto picks the algorithm with the smallest predicted time under the alpha-beta model below;
// the environment variable SEQPAR_SP_ALGO=tree|exscan|allgather overrides kAuto.
//
// Summaries must be float32, float64, complex64 or complex128 (callers upcast half types so
// the boundary states keep the accumulation precision). Tensors may live on any device the
// communicator supports; composition runs with ATen ops on that device.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <utility>

#include "seqpar/comm/communicator.h"

namespace seqpar::comm {

enum class RankScanAlgo : int { kAuto, kTree, kExscan, kAllGather };
const char* rank_scan_algo_name(RankScanAlgo algo);
RankScanAlgo parse_rank_scan_algo(const std::string& name);  // auto|tree|exscan|allgather

// Alpha-beta model of one exchange, per algorithm: a step costs alpha + bytes * beta, where
//   tree, exscan: ceil(log2 P) steps of m bytes;  allgather: ceil(log2 P) * alpha + (P-1) m beta.
// Composition adds combine_s_per_byte per byte of the summaries it reads and writes.
struct AlgoCost {
  double alpha_s = 20e-6;
  double beta_s_per_byte = 1.0 / 10e9;
};
struct CostModel {
  AlgoCost tree, exscan, allgather;
  double combine_s_per_byte = 1.0 / 20e9;
};

// The model used for `backend` ("mpi", "nccl", "c10d:gloo", ...): values fitted by
// benchmarks/sp_exchange_bench and benchmarks/sp_cost_model.py (docs/sequence_parallel.md).
// SEQPAR_SP_ALPHA_US and SEQPAR_SP_BETA_GBPS override alpha and beta of every algorithm,
// SEQPAR_SP_COMBINE_GBPS the composition speed.
CostModel cost_model_for(const std::string& backend);

// Predicted seconds of one exclusive scan of P summaries of `summary_bytes` (= m) each.
double predict_rank_scan_seconds(RankScanAlgo algo, int P, double summary_bytes,
                                 const CostModel& model);

// The algorithm a call with `requested` runs: requested unless kAuto; kAuto honours
// SEQPAR_SP_ALGO, then takes the cheapest predicted algorithm the backend offers.
RankScanAlgo choose_rank_scan_algo(const Communicator& comm, double summary_bytes,
                                   RankScanAlgo requested = RankScanAlgo::kAuto);

// Exclusive scan of (A, B) across the ranks of `comm` (see above). Collective: every rank
// calls with the same shape, dtype and algorithm. Returns (A(E_r), B(E_r)) shaped like A.
// `stream` orders device work (CUDA stream handle; ignored for CPU tensors).
std::pair<at::Tensor, at::Tensor> rank_exclusive_scan(Communicator& comm, const at::Tensor& A,
                                                      const at::Tensor& B, bool reverse,
                                                      RankScanAlgo algo = RankScanAlgo::kAuto,
                                                      Stream stream = {});

// Composition, later after earlier: (A_l*A_e, A_l*B_e + B_l).
std::pair<at::Tensor, at::Tensor> compose(const std::pair<at::Tensor, at::Tensor>& later,
                                          const std::pair<at::Tensor, at::Tensor>& earlier);

// Describes a tensor's storage as a communicator buffer (must be contiguous).
ConstBuffer const_buffer_of(const at::Tensor& t);
MutableBuffer mutable_buffer_of(at::Tensor& t);
DataType data_type_of(at::ScalarType type);

}  // namespace seqpar::comm
