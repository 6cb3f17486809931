// Sequence-parallel chunked GLA and gated DeltaNet (seqpar/sp.h; docs/design.md sections 2-3).
//
// On rank r of P, holding slice r of the sequence:
//   1. (M_r, E_r) = the slice's summary (matrix_state/slice_summary.h), by local autograd;
//   2. x_r = the state entering the slice, from the cross-rank exclusive scan of the summaries
//      (EnteringState below; rank 0 folds h0 into its summary, E_0 <- M_0 h0 + E_0);
//   3. (o_r, f_r) = the local chunked op from x_r, by local autograd (for GLA, steps 1 and 3
//      are one pass: its output is the zero-state output plus a term linear in x_r; gated
//      DeltaNet's step 1 keeps each chunk's map from x_r, so step 3 is batched products only);
//   4. the final state f_{P-1} broadcast from the last rank (FinalFromLast).
// Only steps 2 and 4 cross ranks, so only they are autograd Functions. Backward of step 2,
// with g_r the gradient reaching x_r: the total adjoint of x_r is mu_r = g_r + M_r^T mu_{r+1}
// (mu_P = 0, the final state's gradient reaches the last slice through step 4 and 3), an
// affine recurrence run backwards, so one exclusive scan of (M_r^T, g_r) in reverse rank order
// gives every rank mu_{r+1}; then dE_r = mu_{r+1}, dM_r = mu_{r+1} x_r^T (elementwise
// mu_{r+1} * x_r for GLA's diagonal M), dh0 = M_0^T mu_1 + g_0 on rank 0 and zeros elsewhere.
// The gradient of the replicated final state is summed over ranks (functional collectives'
// convention, as for sp_scan). The summaries travel in the compute dtype (float32; float64 for
// float64 inputs). Every combine runs in a fixed order for a given P and algorithm, so results
// are the same run to run.
#include <torch/autograd.h>

#include "matrix_state/fused_chunks.h"
#include "matrix_state/slice_summary.h"
#include "matrix_state/chunking.h"
#include "seqpar/comm/rank_scan.h"
#include "seqpar/matrix_state.h"
#include "seqpar/sp.h"
#include "sp/autograd_support.h"
#include "sp/entering_state.h"

namespace seqpar::sp {
namespace {

// Every rank's (B, H, K, V, dtype) must agree before summaries are exchanged.
void check_heads_agree(comm::Communicator& g, const char* op, const at::Tensor& q,
                       const at::Tensor& v) {
  check_ranks_agree(g, op, "(batch, heads, K, V, dtype)",
                    {q.size(0), q.size(2), q.size(3), v.size(3),
                     static_cast<int64_t>(q.scalar_type())},
                    "the same batch, heads and dims");
}

std::optional<at::Tensor> state_in_compute_dtype(const std::optional<at::Tensor>& h0,
                                                 at::ScalarType dt) {
  if (!h0 || !h0->defined()) return std::nullopt;
  return h0->to(dt);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> chunk_gla(const at::Tensor& q, const at::Tensor& k,
                                             const at::Tensor& v, const at::Tensor& g,
                                             std::optional<double> scale,
                                             const std::optional<at::Tensor>& initial_state,
                                             int64_t chunk_size,
                                             const std::shared_ptr<comm::Communicator>& group,
                                             const SpOptions& options) {
  TORCH_CHECK(group != nullptr, "seqpar::sp::chunk_gla: group is null");
  // The local op checks every argument; run its checks first on the whole slice.
  seqpar::chunk_gla(q.narrow(1, 0, 0), k.narrow(1, 0, 0), v.narrow(1, 0, 0), g.narrow(1, 0, 0),
                    scale, group->rank() == 0 ? initial_state : std::nullopt, chunk_size);
  check_heads_agree(*group, "seqpar.sp.chunk_gla", q, v);
  // One local pass. GLA's output is linear in the entering state x with a diagonal transition:
  //   o_t = o_t(x = 0) + scale * (q_t * exp(G_t))^T x,   S_T = diag(exp(G_T)) x + S_T(x = 0),
  // G_t the running sum of g over the slice (exp(G_t) <= 1). So the op runs once from zeros,
  // its final state is the slice's E, and x enters through the correction (for 16-bit inputs
  // the zero-state output is rounded once before the correction is added).
  auto [o_zero, E_local] = seqpar::chunk_gla(q, k, v, g, scale, std::nullopt, chunk_size);
  const at::ScalarType dt = E_local.scalar_type();
  const at::Tensor Gsum = g.to(dt).cumsum(1);  // (B, T, H, K)
  const at::Tensor decay = g.to(dt).sum(1).exp();  // (B, H, K)
  // Built from the inputs even for an empty slice (a sum over no steps), so that autograd
  // reaches this rank's backward collectives whatever requires grad.
  const at::Tensor k0 = k.to(dt).narrow(1, 0, 0), v0 = v.to(dt).narrow(1, 0, 0);
  const at::Tensor E = E_local + at::einsum("bthk,bthv->bhkv", {k0, v0});
  const at::Tensor M = decay.unsqueeze(-1).expand(E.sizes());
  const int64_t algo = resolve_algo(*group, options, Transition::kDiagonal, M, E);
  const at::Tensor x = EnteringState::apply(
      M, E, group->rank() == 0 ? state_in_compute_dtype(initial_state, dt) : std::nullopt,
      static_cast<int64_t>(Transition::kDiagonal), group, algo);
  const double s = scale.value_or(1.0 / std::sqrt(static_cast<double>(q.size(3))));
  const at::Tensor correction =
      s * at::einsum("bthk,bhkv->bthv", {q.to(dt) * Gsum.exp(), x});
  const at::Tensor o = (o_zero.to(dt) + correction).to(o_zero.scalar_type());
  return {o, FinalFromLast::apply(M * x + E, group)};
}

std::tuple<at::Tensor, at::Tensor> chunk_gated_delta_rule(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
    const at::Tensor& beta, std::optional<double> scale,
    const std::optional<at::Tensor>& initial_state, int64_t chunk_size,
    const std::shared_ptr<comm::Communicator>& group, const SpOptions& options) {
  TORCH_CHECK(group != nullptr, "seqpar::sp::chunk_gated_delta_rule: group is null");
  seqpar::chunk_gated_delta_rule(q.narrow(1, 0, 0), k.narrow(1, 0, 0), v.narrow(1, 0, 0),
                                 g.narrow(1, 0, 0), beta.narrow(1, 0, 0), scale,
                                 group->rank() == 0 ? initial_state : std::nullopt, chunk_size);
  check_heads_agree(*group, "seqpar.sp.chunk_gated_delta_rule", q, v);
  if (matrix_state::use_fused_chunks(q)) {
    // On the fused chunk kernels, three local passes, each saving only its chunk states: the
    // slice's map M is the run from the identity with zero values (S_T = M I + 0), E the run
    // from zeros, and the outputs the run from the entering state x.
    const at::ScalarType dt = matrix_state::compute_dtype(q.scalar_type());
    const int64_t B = q.size(0), T = q.size(1), H = q.size(2), K = q.size(3);
    const at::Tensor zero_values = at::zeros({1}, v.options()).expand({B, T, H, K});
    const at::Tensor identity = at::eye(K, q.options().dtype(dt)).expand({B, H, K, K});
    const at::Tensor M = std::get<1>(seqpar::chunk_gated_delta_rule(
        q, k, zero_values, g, beta, scale, identity, chunk_size));
    const at::Tensor E = std::get<1>(
        seqpar::chunk_gated_delta_rule(q, k, v, g, beta, scale, std::nullopt, chunk_size));
    const int64_t algo = resolve_algo(*group, options, Transition::kMatrix, M, E);
    const at::Tensor x = EnteringState::apply(
        M, E, group->rank() == 0 ? state_in_compute_dtype(initial_state, dt) : std::nullopt,
        static_cast<int64_t>(Transition::kMatrix), group, algo);
    auto [o, f] = seqpar::chunk_gated_delta_rule(q, k, v, g, beta, scale, x, chunk_size);
    return {o, FinalFromLast::apply(f, group)};
  }
  // Steps 1 and 3 share the slice's chunk work (matrix_state/slice_summary.h).
  const GatedDeltaSlice slice = gated_delta_rule_slice(q, k, v, g, beta, scale, chunk_size);
  const int64_t algo = resolve_algo(*group, options, Transition::kMatrix, slice.M, slice.E);
  const at::Tensor x = EnteringState::apply(
      slice.M, slice.E,
      group->rank() == 0 ? state_in_compute_dtype(initial_state, slice.E.scalar_type()) : std::nullopt,
      static_cast<int64_t>(Transition::kMatrix), group, algo);
  auto [o, f] = slice.finish(x);
  return {o, FinalFromLast::apply(f, group)};
}

}  // namespace seqpar::sp
