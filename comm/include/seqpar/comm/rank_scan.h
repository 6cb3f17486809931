// Cross-rank exclusive scan of propagator summaries (docs/design.md sections 2 and 3).
//
// Each rank r holds a summary S_r of its slice: an affine map on the state. The scan is written
// once over a SummaryKind, which says how summaries compose; two kinds are provided:
//   diagonal_summary()  (A, B), h -> A*h + B elementwise (A, B the same shape);
//   matrix_summary()    (M, E), S -> M S + E per leading index (M (..., K, K), E (..., K, V)).
// The operator is composition, later after earlier: (A2, B2) o (A1, B1) = (A2*A1, A2*B1 + B2),
// and (M2, E2) o (M1, E1) = (M2 M1, M2 E1 + E2). Forward rank order returns
// E_r = S_{r-1} o ... o S_0 on rank r (the identity on rank 0); reverse rank order returns
// E_r = S_{r+1} o ... o S_{P-1} (identity on rank P-1). The state entering rank r is then
// E_r applied to h0. Backward passes scan the adjoint summaries (SummaryKind::adjoint: the
// conjugate-transposed maps) in the opposite rank order.
//
// Algorithms (P ranks, m bytes per summary):
//   kTree       recursive doubling over send_recv: ceil(log2 P) rounds, each rank sends and
//               receives m bytes per round and composes once. Partners beyond the ends are
//               missing and act as the identity, so any P works.
//   kExscan     MPI_Iexscan with a user-defined non-commutative MPI_Op (MPI backend and
//               elementwise kinds only: the diagonal one). Reverse order runs on a
//               rank-reversed duplicate communicator.
//   kAllGather  one all_gather of every summary ((P-1)*m bytes received per rank), then each
//               rank folds its predecessors locally.
//   kRing       the state passed rank to rank (LASP-1's scheme): P-1 sequential hops, each
//               carrying one state (s bytes: B's, E's size), applied to the next rank's summary.
//               Gives the entering state only (rank_entering_state), not whole summaries.
//   kBlelloch   the static Blelloch up/down sweep over send/recv (scan_schedule.h):
//               2 ceil(log2 P) rounds, at most one combine per rank per round. Never cheaper
//               than kTree for an associative kind (kAuto never picks it); it exists for its
//               order of combines, below, which equals one device's Blelloch scan.
// kAuto picks the algorithm with the smallest predicted time under the alpha-beta model below,
// unless the environment says otherwise (resolve_exchange_algo; docs/sequence_parallel.md,
// "Choosing the exchange", documents SEQPAR_SP_ALGO).
//
// Order of combines. An associative kind gets the same result from every algorithm up to
// rounding; a kind that is not associative (learned aggregations) needs to know which
// parenthesization it gets, so it is part of each algorithm's contract:
//   kTree       at scan position q, round d = 1, 2, 4, ... composes the window received from
//               position q - d on the earlier side: E_q = ((I o W_1) o W_2) o W_4 ..., where
//               W_d is itself built the same way on position q - d. The parenthesization
//               depends on (P, q) only, never on timing, but differs between positions.
//   kAllGather  a left fold in scan order: E_q = S_{q-1} o (... o (S_1 o S_0)), the same
//               shape on every rank.
//   kExscan     MPI's (unspecified) order.
//   kRing       the state itself, S_{q-1}(... S_1(S_0(0))): no summaries are combined.
//   kBlelloch   the left fold of the aligned power-of-two blocks tiling [0, q), largest first,
//               each block a balanced tree: the same on every rank and equal to a single
//               device's static Blelloch scan when each rank holds an aligned power-of-two
//               block of items (scan_schedule.h).
//
// Summaries must be float32, float64, complex64 or complex128 (callers upcast half types so
// the boundary states keep the accumulation precision). Tensors may live on any device the
// communicator supports; composition runs with ATen ops on that device.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <utility>
#include <vector>

#include "seqpar/comm/communicator.h"
#include "seqpar/comm/exchange_algo.h"

namespace seqpar::comm {

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
// exscan_possible = false (a kind MPI_Exscan cannot combine) kAuto never picks kExscan; with
// size.state_bytes = 0 (the caller needs whole summaries) never kRing; an environment choice
// that is not possible runs kTree.
ExchangeAlgo choose_exchange_algo(const Communicator& comm, const ExchangeSize& size,
                                  ExchangeAlgo requested, bool exscan_possible);

// The tensors of one summary, on one device, in one dtype.
using SummaryParts = std::vector<at::Tensor>;

// What the cross-rank scan needs to know about a kind of summary: how two compose. Which ranks
// exchange what and in which order belongs to the algorithm (above), not to the kind.
class SummaryKind {
 public:
  virtual ~SummaryKind() = default;
  virtual const char* name() const = 0;
  // Throws std::invalid_argument naming the kind when the parts do not form a summary.
  virtual void check(const SummaryParts& s) const = 0;
  virtual SummaryParts identity_like(const SummaryParts& s) const = 0;
  // later o earlier: the map that applies `earlier` first.
  virtual SummaryParts combine(const SummaryParts& later, const SummaryParts& earlier) const = 0;
  // The state after the map: A*x + B, or M x + E.
  virtual at::Tensor apply(const SummaryParts& s, const at::Tensor& state) const = 0;
  // The summary of the adjoint's transition: conjugate-transposed maps, which compose in the
  // opposite order (the second part, the adjoint's input, is the caller's).
  virtual at::Tensor adjoint_transition(const at::Tensor& transition) const = 0;
  // Bytes and arithmetic of exchanging and combining this summary, for the cost model.
  virtual ExchangeSize exchange_size(const SummaryParts& s) const = 0;
  // True when combine acts independently on aligned scalars of same-shaped parts, so that
  // MPI_Exscan's elementwise user op can run it.
  virtual bool elementwise() const { return false; }
};
const SummaryKind& diagonal_summary();
const SummaryKind& matrix_summary();

// The algorithm an exchange of `own` (summaries of `kind`) runs: the one place where kAuto is
// resolved, from the kind's exchange size and the cost model (choose_exchange_algo). Callers
// that must run the same algorithm in a later collective (backward passes) resolve once and
// pass the result on. whole_summaries: the caller needs E_r itself, so not the ring.
ExchangeAlgo resolve_exchange_algo(const Communicator& comm, const SummaryKind& kind,
                                   const SummaryParts& own, ExchangeAlgo requested,
                                   bool whole_summaries = false);

// Exclusive scan of this rank's summary across the ranks of `comm` (see above). Collective:
// every rank calls with the same kind, shapes, dtype and algorithm. Returns E_r, shaped like
// `own`. `stream` orders device work (CUDA stream handle; ignored for CPU tensors).
SummaryParts rank_exclusive_scan(Communicator& comm, const SummaryKind& kind,
                                 const SummaryParts& own, bool reverse,
                                 ExchangeAlgo algo = ExchangeAlgo::kAuto, Stream stream = {});

// The state entering this rank when the scan starts from zeros: E_r applied to 0, i.e. the
// second part of rank_exclusive_scan's result (callers fold h0 into the first rank's summary).
// Runs every algorithm, the ring included (which then passes states, not summaries). Shaped
// like own[1].
at::Tensor rank_entering_state(Communicator& comm, const SummaryKind& kind,
                               const SummaryParts& own, bool reverse,
                               ExchangeAlgo algo = ExchangeAlgo::kAuto, Stream stream = {});

// The diagonal kind with its two parts as a pair: (A(E_r), B(E_r)) shaped like A.
std::pair<at::Tensor, at::Tensor> rank_exclusive_scan(Communicator& comm, const at::Tensor& A,
                                                      const at::Tensor& B, bool reverse,
                                                      ExchangeAlgo algo = ExchangeAlgo::kAuto,
                                                      Stream stream = {});

// Composition of diagonal summaries, later after earlier: (A_l*A_e, A_l*B_e + B_l).
std::pair<at::Tensor, at::Tensor> compose(const std::pair<at::Tensor, at::Tensor>& later,
                                          const std::pair<at::Tensor, at::Tensor>& earlier);

// Describes a tensor's storage as a communicator buffer (must be contiguous).
ConstBuffer const_buffer_of(const at::Tensor& t);
MutableBuffer mutable_buffer_of(at::Tensor& t);
DataType data_type_of(at::ScalarType type);

}  // namespace seqpar::comm
