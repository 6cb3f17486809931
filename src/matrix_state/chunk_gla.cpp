// Chunked gated linear attention (seqpar/matrix_state.h; the math in docs/design.md
// section 3).
//
// Per head, with G_t the running sum of g inside the chunk (so exp(G_t) is the decay from the
// chunk's start to step t, per key channel) and S the state entering the chunk:
//   o_t     = (q_t * exp(G_t))^T S  +  sum_{s <= t} A[t, s] v_s,
//   A[t, s] = sum_k q_tk k_sk exp(G_tk - G_sk),
//   S'      = diag(exp(G_C)) S + sum_s (k_s * exp(G_C - G_s)) v_s^T.
// The chunk states S are a diagonal recurrence over chunks, run by seqpar's own scan; A comes
// from matrix_state/decayed_scores.h, which keeps exp(-G) from overflowing.
//
#include <ATen/ATen.h>

#include <limits>

#include "matrix_state/chunking.h"
#include "matrix_state/decayed_scores.h"
#include "matrix_state/fused_chunks.h"
#include "ops/packed_sequences.h"
#include "ops/op_handles.h"
#include "seqpar/matrix_state.h"

namespace seqpar {

std::tuple<at::Tensor, at::Tensor> chunk_gla(const at::Tensor& q, const at::Tensor& k,
                                             const at::Tensor& v, const at::Tensor& g,
                                             std::optional<double> scale,
                                             const std::optional<at::Tensor>& initial_state,
                                             int64_t chunk_size,
                                             const std::optional<at::Tensor>& cu_seqlens) {
  constexpr const char* op = "seqpar.chunk_gla";
  const matrix_state::Dims d = matrix_state::check_qkv(op, q, k, v, chunk_size);
  matrix_state::check_per_step(op, "g", g, q, d, d.K);
  const auto cu = ops::check_cu_seqlens(op, cu_seqlens, d.B, d.T);
  if (initial_state && initial_state->defined())
    matrix_state::check_state(op, *initial_state, q, d, cu);
  matrix_state::check_scores_chunk(op, d);
  const at::ScalarType dt = matrix_state::compute_dtype(q.scalar_type());
  const double s = scale.value_or(1.0 / std::sqrt(static_cast<double>(d.K)));
  if (matrix_state::use_fused_chunks("gla", q, v, chunk_size))
    return matrix_state::fused_chunk_recurrence("gla", q, k, v, g, at::Tensor(), s, initial_state,
                                                chunk_size, cu);
  if (cu) {
    return matrix_state::run_per_sequence(
        *cu, {q, k, v, g}, initial_state,
        [&](const std::vector<at::Tensor>& x, const std::optional<at::Tensor>& init) {
          return chunk_gla(x[0], x[1], x[2], x[3], s, init, chunk_size);
        });
  }
  const at::Tensor S0 = matrix_state::initial_state_or_zeros(initial_state, q, d, dt);
  if (d.N == 0) return {at::empty({d.B, 0, d.H, d.V}, v.options()), S0.clone()};

  const at::Tensor qc = matrix_state::to_chunks(q, d, dt) * s;  // (B, H, N, C, K)
  const at::Tensor kc = matrix_state::to_chunks(k, d, dt);
  const at::Tensor vc = matrix_state::to_chunks(v, d, dt);  // (B, H, N, C, V)
  const at::Tensor gc = matrix_state::to_chunks(g, d, dt);
  const at::Tensor G = gc.cumsum(3);
  const at::Tensor G_last = G.narrow(3, d.C - 1, 1);  // (B, H, N, 1, K)

  // Chunk summaries (diag(exp(G_C)), E) and the states entering each chunk.
  const at::Tensor E = at::matmul((kc * (G_last - G).exp()).transpose(-1, -2), vc);  // (B,H,N,K,V)
  const at::Tensor decay = G_last.exp().transpose(-1, -2).expand({d.B, d.H, d.N, d.K, d.V});
  const auto [states, final_state] = ops::scan_op().call(
      decay.flatten(0, 1), E.flatten(0, 1), S0.flatten(0, 1), /*reverse=*/false, std::nullopt);
  const at::Tensor entering =
      at::cat({S0.flatten(0, 1).unsqueeze(1), states.narrow(1, 0, d.N - 1)}, 1)
          .view({d.B, d.H, d.N, d.K, d.V});

  const at::Tensor o = at::matmul(qc * G.exp(), entering) +
                       at::matmul(matrix_state::intra_chunk_scores(qc, kc, gc, G, d), vc);
  return {matrix_state::from_chunks(o, d, v.scalar_type()),
          final_state.view({d.B, d.H, d.K, d.V})};
}

}  // namespace seqpar
