// Sequence-parallel scan: the sequence is split along time across the ranks of a group, each
// rank holding one contiguous slice (docs/design.md section 2).
//
//   1. local summary (A_r, B_r) of the slice            (seqpar::scan_summary)
//   2. exclusive scan of the summaries across ranks      (seqpar::comm::rank_entering_state)
//      -> the state H_r entering this rank
//   3. local scan of the slice from H_r                  (seqpar::scan)
//
// Slices follow rank order: rank 0 holds the first tokens. They may differ in length and may be
// empty (time = 0). Batch, channel shape, dtype and device kind must agree across ranks; the
// ranks exchange a small header first and every rank throws a clear error when they do not.
//
// h0 is the state entering the whole sequence: it is read on rank 0 for a forward scan and on
// the last rank for a reverse scan (the rank whose slice the scan enters first); other ranks'
// h0 is ignored (it may be absent there) and receives a zero gradient.
//
// Returns (h, h_last): h is this rank's slice of the global h; h_last is the global final state
// (the state after the last rank's last token, or after rank 0's first token for reverse), the
// same value on every rank.
//
// Gradients follow torch.distributed's functional collectives: the global loss is the sum of
// the ranks' losses. So the gradient flowing into the replicated h_last is summed over ranks,
// and grad_a, grad_b are each rank's slice of the gradient of that global loss.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <optional>
#include <string>
#include <tuple>

#include "seqpar/block_scan.h"
#include "seqpar/comm/exchange_algo.h"

namespace seqpar::comm {
class Communicator;
}  // namespace seqpar::comm

namespace seqpar::sp {

// How the ranks' summaries are exchanged: comm's one exchange-algorithm type (what each
// algorithm does and costs: seqpar/comm/rank_scan.h). kAuto is resolved by the cost model, or
// by the environment variable SEQPAR_SP_ALGO when it is set (docs/sequence_parallel.md,
// "Choosing the exchange"); any other value is run as asked on every rank.
using comm::ExchangeAlgo;

struct SpOptions {
  ExchangeAlgo algo = ExchangeAlgo::kAuto;
};

// Differentiable in a, b and h0. `group` must outlive the backward pass (it is held by the
// autograd graph through the shared_ptr). cu_seqlens (packed sequences, the same on every rank;
// forward scans): h0 (N, *channels) the same on every rank, each row applied where its
// sequence starts, and every rank receives all N final states (docs/packed_sequences.md).
std::tuple<at::Tensor, at::Tensor> scan(const at::Tensor& a, const at::Tensor& b,
                                        const std::optional<at::Tensor>& h0, bool reverse,
                                        const std::shared_ptr<comm::Communicator>& group,
                                        const SpOptions& options = {},
                                        const std::optional<at::Tensor>& cu_seqlens = std::nullopt);

// The same over a torch.distributed process group registered under group_name (as functional
// collectives name groups, e.g. dist.group.WORLD.group_name in Python). This is what
// torch.ops.seqpar.sp_scan(a, b, h0, reverse, group_name) calls.
std::tuple<at::Tensor, at::Tensor> scan(const at::Tensor& a, const at::Tensor& b,
                                        const std::optional<at::Tensor>& h0, bool reverse,
                                        const std::string& group_name,
                                        const SpOptions& options = {},
                                        const std::optional<at::Tensor>& cu_seqlens = std::nullopt);

// The 2x2 block scan (seqpar/block_scan.h) with the sequence split along time across the
// ranks of `group`: each rank passes its slice of A and b (any length, 0 included); h0 is read
// on the rank the scan enters first; h_last is the global final state on every rank. The
// slices' summaries (a 2x2 matrix and a 2-vector per channel) go through the one cross-rank
// scan as matrix summaries. Differentiable in A, b and h0.
std::tuple<at::Tensor, at::Tensor> block_scan(const at::Tensor& A, const at::Tensor& b,
                                              const std::optional<at::Tensor>& h0,
                                              const BlockScanOptions& options,
                                              const std::shared_ptr<comm::Communicator>& group,
                                              const SpOptions& sp_options = {});
std::tuple<at::Tensor, at::Tensor> block_scan(const at::Tensor& A, const at::Tensor& b,
                                              const std::optional<at::Tensor>& h0,
                                              const BlockScanOptions& options,
                                              const std::string& group_name,
                                              const SpOptions& sp_options = {});

// Chunked GLA and gated DeltaNet (seqpar/matrix_state.h) with the sequence split along time
// across the ranks of `group`: each rank passes its own slice (any length, including 0 and
// lengths that are not a multiple of chunk_size; batch, heads, K, V and dtype must agree), the
// ranks' slice summaries (M, E) are combined by the cross-rank scan, and each rank finishes its
// slice from the state entering it. initial_state is read on rank 0 (ignored elsewhere, where
// its gradient is zero); the returned final state is the global one, the same on every rank,
// and its gradient is summed over ranks, as for scan above. Differentiable in every tensor.
// cu_seqlens (packed sequences, docs/packed_sequences.md): the boundaries of the whole pack,
// the same on every rank, which passes its slice of the packed steps (a sequence may span
// ranks); initial_state (N, H, K, V) is then the same on every rank, each row applied where
// its sequence starts, and every rank receives all N final states (N, H, K, V).
std::tuple<at::Tensor, at::Tensor> chunk_gla(const at::Tensor& q, const at::Tensor& k,
                                             const at::Tensor& v, const at::Tensor& g,
                                             std::optional<double> scale,
                                             const std::optional<at::Tensor>& initial_state,
                                             int64_t chunk_size,
                                             const std::shared_ptr<comm::Communicator>& group,
                                             const SpOptions& options = {},
                                             const std::optional<at::Tensor>& cu_seqlens = std::nullopt);
std::tuple<at::Tensor, at::Tensor> chunk_gated_delta_rule(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
    const at::Tensor& beta, std::optional<double> scale,
    const std::optional<at::Tensor>& initial_state, int64_t chunk_size,
    const std::shared_ptr<comm::Communicator>& group, const SpOptions& options = {},
    const std::optional<at::Tensor>& cu_seqlens = std::nullopt);

// Kimi Delta Attention (seqpar/matrix_state.h) with the sequence split along time across the
// ranks of `group`; the conventions are chunk_gated_delta_rule's above (three local passes: the
// slice's map, its zero-state run, the run from the entering state).
std::tuple<at::Tensor, at::Tensor> chunk_kda(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
    const at::Tensor& beta, std::optional<double> scale,
    const std::optional<at::Tensor>& initial_state, int64_t chunk_size,
    const std::shared_ptr<comm::Communicator>& group, const SpOptions& options = {},
    const std::optional<at::Tensor>& cu_seqlens = std::nullopt);

// Gated DeltaProduct (seqpar/matrix_state.h) with the sequence split along time across the
// ranks of `group`: each rank passes its slice of the tokens (k, v, beta with num_householder
// rows per token of it); the conventions are chunk_gated_delta_rule's above.
std::tuple<at::Tensor, at::Tensor> chunk_gated_delta_product(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const std::optional<at::Tensor>& g, const at::Tensor& beta, int64_t num_householder,
    std::optional<double> scale, const std::optional<at::Tensor>& initial_state,
    int64_t chunk_size, const std::shared_ptr<comm::Communicator>& group,
    const SpOptions& options = {}, const std::optional<at::Tensor>& cu_seqlens = std::nullopt);

// seqpar::previous_steps (seqpar/previous_steps.h) with the sequence split along time across
// the ranks of `group`: `before` is the `width` steps preceding this rank's slice, gathered
// from as many earlier ranks as needed (slices may be shorter than `width`, or empty), `last`
// the `width` steps ending the whole sequence, the same on every rank (its gradient summed
// over ranks, as for scan above). initial is read on rank 0. Exact in every dtype (values are
// moved, not combined); differentiable in x and initial. With cu_seqlens (packed sequences, the
// same on every rank): initial (N, width, channels) the same on every rank, `before` one window
// per local segment of this slice (seqpar.sp_packed_bounds gives their bounds), `last` (N,
// width, channels) on every rank.
std::tuple<at::Tensor, at::Tensor> previous_steps(const at::Tensor& x, int64_t width,
                                                  const std::optional<at::Tensor>& initial,
                                                  const std::shared_ptr<comm::Communicator>& group,
                                                  const SpOptions& options = {},
                                                  const std::optional<at::Tensor>& cu_seqlens = std::nullopt);

// Packed sequences: the bounds of this rank's local segments, int64 [segments + 1] on the host,
// from the whole pack's cu_seqlens (the same on every rank) and this rank's slice length:
// what causal_conv1d reads with the `before` windows of previous_steps above. Collective (the
// ranks check cu_seqlens together, as every packed sp op does).
at::Tensor packed_bounds(const at::Tensor& cu_seqlens, int64_t local_time,
                         const std::shared_ptr<comm::Communicator>& group);

}  // namespace seqpar::sp
