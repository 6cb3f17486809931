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
#include "sp/packed_slice.h"

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

// A zero scalar built from every input (sums over no steps), so that what it is added to
// reaches each input's autograd graph even on a rank with an empty slice.
at::Tensor tie_to(std::initializer_list<at::Tensor> xs, at::ScalarType dt) {
  at::Tensor z = at::zeros({}, xs.begin()->options().dtype(dt));
  for (const at::Tensor& x : xs)
    if (x.defined()) z = z + x.narrow(1, 0, 0).to(dt).sum();
  return z;
}

// The packed (cu_seqlens) sp run of a matrix-state recurrence (sp/packed_slice.h), given the
// local op `local(lo, init, cu)` on this slice's steps [lo, T), the slice's usual summary, and
// the checked initial states.
std::tuple<at::Tensor, at::Tensor> packed_matrix_state(
    const char* op, const at::Tensor& q, const at::Tensor& v,
    const std::optional<at::Tensor>& initial_state, const at::Tensor& cu_seqlens,
    Transition transition, const at::Tensor& tie,
    const std::function<std::tuple<at::Tensor, at::Tensor>(
        int64_t, const std::optional<at::Tensor>&, const std::optional<at::Tensor>&)>& local,
    const std::function<std::pair<at::Tensor, at::Tensor>()>& summary,
    const std::shared_ptr<comm::Communicator>& group, const SpOptions& options) {
  const PackedSlice slice = packed_slice(*group, op, cu_seqlens, q.size(0), q.size(1));
  const at::ScalarType dt = matrix_state::compute_dtype(q.scalar_type());
  const int64_t H = q.size(2), K = q.size(3), V = v.size(3);
  PackedRecurrence r;
  r.transition = transition;
  if (initial_state && initial_state->defined()) {
    TORCH_CHECK(initial_state->sizes() == at::IntArrayRef({slice.sequences, H, K, V}), op,
                ": argument 'initial_state' must have shape (sequences of 'cu_seqlens', heads, K, "
                "V) = (", slice.sequences, ", ", H, ", ", K, ", ", V, "), the same on every rank, "
                "got ", initial_state->sizes());
    r.initial = initial_state->to(dt);
  }
  r.zero_row = at::zeros({1, H, K, V}, q.options().dtype(dt)) + tie;
  r.continuing_summary = summary;
  r.tail_state = [&](int64_t lo, const at::Tensor& init) {
    return std::get<1>(local(lo, init, std::nullopt)) + tie;
  };
  r.run = [&](const at::Tensor& init_rows, const at::Tensor& local_cu) {
    return local(0, init_rows, local_cu);
  };
  const PackedResult res = run_packed(group, options, slice, r);
  return {res.outputs, res.finals};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> chunk_gla(const at::Tensor& q, const at::Tensor& k,
                                             const at::Tensor& v, const at::Tensor& g,
                                             std::optional<double> scale,
                                             const std::optional<at::Tensor>& initial_state,
                                             int64_t chunk_size,
                                             const std::shared_ptr<comm::Communicator>& group,
                                             const SpOptions& options,
                                             const std::optional<at::Tensor>& cu_seqlens) {
  TORCH_CHECK(group != nullptr, "seqpar::sp::chunk_gla: group is null");
  if (cu_seqlens && cu_seqlens->defined()) {
    seqpar::chunk_gla(q.narrow(1, 0, 0), k.narrow(1, 0, 0), v.narrow(1, 0, 0), g.narrow(1, 0, 0),
                      scale, std::nullopt, chunk_size);
    check_heads_agree(*group, "seqpar.sp.chunk_gla", q, v);
    const at::ScalarType dt = matrix_state::compute_dtype(q.scalar_type());
    const at::Tensor tie = tie_to({q, k, v, g}, dt);
    const auto local = [&](int64_t lo, const std::optional<at::Tensor>& init,
                           const std::optional<at::Tensor>& cu) {
      const int64_t n = q.size(1) - lo;
      return seqpar::chunk_gla(q.narrow(1, lo, n), k.narrow(1, lo, n), v.narrow(1, lo, n),
                               g.narrow(1, lo, n), scale, init, chunk_size, cu);
    };
    // A slice inside one sequence: S -> diag(exp(sum g)) S + E, E its run from zeros.
    const auto summary = [&] {
      const at::Tensor E = std::get<1>(local(0, std::nullopt, std::nullopt)) + tie;
      return std::make_pair(g.to(dt).sum(1).exp().unsqueeze(-1).expand(E.sizes()), E);
    };
    return packed_matrix_state("seqpar.sp.chunk_gla", q, v, initial_state, *cu_seqlens,
                               Transition::kDiagonal, tie, local, summary, group, options);
  }
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
      static_cast<int64_t>(Transition::kDiagonal), group, algo, /*reverse=*/false);
  const double s = scale.value_or(1.0 / std::sqrt(static_cast<double>(q.size(3))));
  const at::Tensor correction =
      s * at::einsum("bthk,bhkv->bthv", {q.to(dt) * Gsum.exp(), x});
  const at::Tensor o = (o_zero.to(dt) + correction).to(o_zero.scalar_type());
  return {o, FinalFromLast::apply(M * x + E, group)};
}

namespace {

// A delta-rule recurrence's one-device op (gated DeltaNet, KDA) on this slice's steps [lo, T)
// from `init`, with `values` in place of v when defined (the slice's map M is the run from the
// identity with zero values: S_T = M I + 0).
using DeltaLocal = std::function<std::tuple<at::Tensor, at::Tensor>(
    int64_t lo, const at::Tensor& values, const std::optional<at::Tensor>& init,
    const std::optional<at::Tensor>& cu)>;

// The slice's map M: the run from the identity with zero values.
at::Tensor delta_slice_map(const at::Tensor& q, const at::Tensor& v, const DeltaLocal& local) {
  const at::ScalarType dt = matrix_state::compute_dtype(q.scalar_type());
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2), K = q.size(3);
  const at::Tensor zero_values = at::zeros({1}, v.options()).expand({B, T, H, K});
  const at::Tensor identity = at::eye(K, q.options().dtype(dt)).expand({B, H, K, K});
  return std::get<1>(local(0, zero_values, identity, std::nullopt));
}

// Packed sequences (sp/packed_slice.h) of a delta-rule recurrence.
std::tuple<at::Tensor, at::Tensor> packed_delta(
    const char* op, const at::Tensor& q, const at::Tensor& v, const at::Tensor& tie,
    const std::optional<at::Tensor>& initial_state, const at::Tensor& cu_seqlens,
    const DeltaLocal& local, const std::shared_ptr<comm::Communicator>& group,
    const SpOptions& options) {
  const auto run = [&](int64_t lo, const std::optional<at::Tensor>& init,
                       const std::optional<at::Tensor>& cu) {
    return local(lo, at::Tensor(), init, cu);
  };
  // A slice inside one sequence: M its run from the identity with zero values, E from zeros.
  const auto summary = [&] {
    return std::make_pair(delta_slice_map(q, v, local) + tie,
                          std::get<1>(run(0, std::nullopt, std::nullopt)) + tie);
  };
  return packed_matrix_state(op, q, v, initial_state, cu_seqlens, Transition::kMatrix, tie, run,
                             summary, group, options);
}

// Three local passes, each saving only what its one-device op saves: the slice's map M, E the
// run from zeros, and the outputs the run from the entering state x. M and E are tied to every
// input and an empty slice's outputs to x, so that autograd reaches this rank's backward
// collectives whatever the loss reads.
std::tuple<at::Tensor, at::Tensor> three_pass_delta(
    const at::Tensor& q, const at::Tensor& v, const at::Tensor& tie,
    const std::optional<at::Tensor>& initial_state, const DeltaLocal& local,
    const std::shared_ptr<comm::Communicator>& group, const SpOptions& options) {
  const at::ScalarType dt = matrix_state::compute_dtype(q.scalar_type());
  const at::Tensor M = delta_slice_map(q, v, local) + tie;
  const at::Tensor E = std::get<1>(local(0, at::Tensor(), std::nullopt, std::nullopt)) + tie;
  const int64_t algo = resolve_algo(*group, options, Transition::kMatrix, M, E);
  const at::Tensor x = EnteringState::apply(
      M, E, group->rank() == 0 ? state_in_compute_dtype(initial_state, dt) : std::nullopt,
      static_cast<int64_t>(Transition::kMatrix), group, algo, /*reverse=*/false);
  auto [o, f] = local(0, at::Tensor(), x, std::nullopt);
  if (o.size(1) == 0) o = x.sum(2).unsqueeze(1).narrow(1, 0, 0).to(o.scalar_type());
  return {o, FinalFromLast::apply(f, group)};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> chunk_gated_delta_rule(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
    const at::Tensor& beta, std::optional<double> scale,
    const std::optional<at::Tensor>& initial_state, int64_t chunk_size,
    const std::shared_ptr<comm::Communicator>& group, const SpOptions& options,
    const std::optional<at::Tensor>& cu_seqlens) {
  constexpr const char* op = "seqpar.sp.chunk_gated_delta_rule";
  TORCH_CHECK(group != nullptr, "seqpar::sp::chunk_gated_delta_rule: group is null");
  const bool packed = cu_seqlens && cu_seqlens->defined();
  // The local op checks every argument; run its checks first on the whole slice.
  seqpar::chunk_gated_delta_rule(q.narrow(1, 0, 0), k.narrow(1, 0, 0), v.narrow(1, 0, 0),
                                 g.narrow(1, 0, 0), beta.narrow(1, 0, 0), scale,
                                 group->rank() == 0 && !packed ? initial_state : std::nullopt,
                                 chunk_size);
  check_heads_agree(*group, op, q, v);
  const DeltaLocal local = [&](int64_t lo, const at::Tensor& values,
                               const std::optional<at::Tensor>& init,
                               const std::optional<at::Tensor>& cu) {
    const int64_t n = q.size(1) - lo;
    return seqpar::chunk_gated_delta_rule(
        q.narrow(1, lo, n), k.narrow(1, lo, n), (values.defined() ? values : v).narrow(1, lo, n),
        g.narrow(1, lo, n), beta.narrow(1, lo, n), scale, init, chunk_size, cu);
  };
  const at::Tensor tie = tie_to({q, k, v, g, beta}, matrix_state::compute_dtype(q.scalar_type()));
  if (packed) return packed_delta(op, q, v, tie, initial_state, *cu_seqlens, local, group, options);
  // On the fused chunk kernels, three passes that each keep only their chunk states.
  if (matrix_state::use_fused_chunks(q))
    return three_pass_delta(q, v, tie, initial_state, local, group, options);
  // Steps 1 and 3 share the slice's chunk work (matrix_state/slice_summary.h).
  const GatedDeltaSlice slice = gated_delta_rule_slice(q, k, v, g, beta, scale, chunk_size);
  const int64_t algo = resolve_algo(*group, options, Transition::kMatrix, slice.M, slice.E);
  const at::Tensor x = EnteringState::apply(
      slice.M, slice.E,
      group->rank() == 0 ? state_in_compute_dtype(initial_state, slice.E.scalar_type()) : std::nullopt,
      static_cast<int64_t>(Transition::kMatrix), group, algo, /*reverse=*/false);
  auto [o, f] = slice.finish(x);
  return {o, FinalFromLast::apply(f, group)};
}

std::tuple<at::Tensor, at::Tensor> chunk_kda(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
    const at::Tensor& beta, std::optional<double> scale,
    const std::optional<at::Tensor>& initial_state, int64_t chunk_size,
    const std::shared_ptr<comm::Communicator>& group, const SpOptions& options,
    const std::optional<at::Tensor>& cu_seqlens) {
  constexpr const char* op = "seqpar.sp.chunk_kda";
  TORCH_CHECK(group != nullptr, "seqpar::sp::chunk_kda: group is null");
  const bool packed = cu_seqlens && cu_seqlens->defined();
  seqpar::chunk_kda(q.narrow(1, 0, 0), k.narrow(1, 0, 0), v.narrow(1, 0, 0), g.narrow(1, 0, 0),
                    beta.narrow(1, 0, 0), scale,
                    group->rank() == 0 && !packed ? initial_state : std::nullopt, chunk_size);
  check_heads_agree(*group, op, q, v);
  const DeltaLocal local = [&](int64_t lo, const at::Tensor& values,
                               const std::optional<at::Tensor>& init,
                               const std::optional<at::Tensor>& cu) {
    const int64_t n = q.size(1) - lo;
    return seqpar::chunk_kda(q.narrow(1, lo, n), k.narrow(1, lo, n),
                             (values.defined() ? values : v).narrow(1, lo, n), g.narrow(1, lo, n),
                             beta.narrow(1, lo, n), scale, init, chunk_size, cu);
  };
  const at::Tensor tie = tie_to({q, k, v, g, beta}, matrix_state::compute_dtype(q.scalar_type()));
  if (packed) return packed_delta(op, q, v, tie, initial_state, *cu_seqlens, local, group, options);
  return three_pass_delta(q, v, tie, initial_state, local, group, options);
}

}  // namespace seqpar::sp
