// Cross-rank exclusive scan of propagator summaries (docs/design.md sections 2 and 3).
//
// Each rank r holds a summary S_r of its slice: an affine map on the state. The scan is written
// once over a SummaryKind (summary_kind.h), which says how summaries compose: the diagonal
// (A, B) and the matrix (M, E) kinds.
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
//   kExscan     the communicator's exclusive scan of pairs (Communicator::pair_exscan: MPI_Iexscan
//               with a user-defined non-commutative MPI_Op, the MPI backend only), for
//               elementwise kinds only (the diagonal one).
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

#include <utility>

#include "seqpar/comm/communicator.h"
#include "seqpar/comm/cost_model.h"
#include "seqpar/comm/exchange_algo.h"
#include "seqpar/comm/summary_kind.h"
#include "seqpar/comm/tensor_buffer.h"

namespace seqpar::comm {

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

}  // namespace seqpar::comm
