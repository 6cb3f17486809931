// Chunked gated DeltaNet (seqpar/matrix_state.h; the math in docs/design.md section 3).
//
// Write the step as S_t = alpha_t S_{t-1} + k_t w_t^T with w_t = beta_t (v_t - alpha_t
// S_{t-1}^T k_t). Inside a chunk entered with state S, with G_t the running sum of g (one
// scalar per head and step) and gamma_t = exp(G_t):
//   S_t = gamma_t S + sum_{s <= t} exp(G_t - G_s) k_s w_s^T,
// and substituting S_{s-1} gives the pseudo-values w as the solution of one unit lower
// triangular system per chunk (the WY/UT form of the product of the (I - beta k k^T) factors):
//   (I + diag(beta) strictly_lower(D * K K^T)) w = diag(beta) V - diag(beta gamma) K S,
//   D[t, s] = exp(G_t - G_s) for s <= t (0 above the diagonal),
// so w = U - W S with U, W solved once per chunk independently of S. Then
//   o  = diag(gamma) Q S + (D * Q K^T) (U - W S),
//   S' = M S + E,  M = gamma_C I - Kbar^T W,  E = Kbar^T U,  Kbar = diag(exp(G_C - G)) K.
// Every exponential is of a non-positive number, so nothing overflows for any decay in (0, 1].
// The chunk states run as one matrix product per chunk, in order.
#include <ATen/ATen.h>

#include <limits>
#include <vector>

#include "matrix_state/chunking.h"
#include "seqpar/matrix_state.h"

namespace seqpar {

std::tuple<at::Tensor, at::Tensor> chunk_gated_delta_rule(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
    const at::Tensor& beta, std::optional<double> scale,
    const std::optional<at::Tensor>& initial_state, int64_t chunk_size) {
  constexpr const char* op = "seqpar.chunk_gated_delta_rule";
  const matrix_state::Dims d = matrix_state::check_qkv(op, q, k, v, chunk_size);
  matrix_state::check_per_step(op, "g", g, q, d, std::nullopt);
  matrix_state::check_per_step(op, "beta", beta, q, d, std::nullopt);
  if (initial_state && initial_state->defined()) matrix_state::check_state(op, *initial_state, q, d);
  const at::ScalarType dt = matrix_state::compute_dtype(q.scalar_type());
  const double s = scale.value_or(1.0 / std::sqrt(static_cast<double>(d.K)));
  at::Tensor S = matrix_state::initial_state_or_zeros(initial_state, q, d, dt);
  if (d.N == 0) return {at::empty({d.B, 0, d.H, d.V}, v.options()), S.clone()};

  const at::Tensor qc = matrix_state::to_chunks(q, d, dt) * s;  // (B, H, N, C, K)
  const at::Tensor kc = matrix_state::to_chunks(k, d, dt);
  const at::Tensor vc = matrix_state::to_chunks(v, d, dt);  // (B, H, N, C, V)
  const at::Tensor b = matrix_state::to_chunks_per_head(beta, d, dt).unsqueeze(-1);  // (.., C, 1)
  const at::Tensor G = matrix_state::to_chunks_per_head(g, d, dt).cumsum(3);          // (.., C)
  const at::Tensor gamma = G.exp().unsqueeze(-1);                                      // (.., C, 1)

  const auto bopts = q.options().dtype(at::kBool);
  const at::Tensor lower = at::ones({d.C, d.C}, bopts).tril();
  const at::Tensor D = at::where(lower, G.unsqueeze(-1) - G.unsqueeze(-2),
                                 -std::numeric_limits<double>::infinity())
                           .exp();  // (B, H, N, C, C)
  const at::Tensor system =
      at::eye(d.C, qc.options()) + b * (D * at::matmul(kc, kc.transpose(-1, -2))).tril(-1);
  const at::Tensor U = at::linalg_solve_triangular(system, b * vc, /*upper=*/false,
                                                   /*left=*/true, /*unitriangular=*/true);
  const at::Tensor W = at::linalg_solve_triangular(system, (b * gamma) * kc, /*upper=*/false,
                                                   /*left=*/true, /*unitriangular=*/true);

  // Chunk summaries and the states entering each chunk.
  const at::Tensor G_last = G.narrow(3, d.C - 1, 1);                   // (B, H, N, 1)
  const at::Tensor k_bar = kc * (G_last - G).exp().unsqueeze(-1);     // (B, H, N, C, K)
  const at::Tensor M = G_last.exp().unsqueeze(-1) * at::eye(d.K, qc.options()) -
                       at::matmul(k_bar.transpose(-1, -2), W);         // (B, H, N, K, K)
  const at::Tensor E = at::matmul(k_bar.transpose(-1, -2), U);         // (B, H, N, K, V)
  std::vector<at::Tensor> entering;
  entering.reserve(d.N);
  for (int64_t n = 0; n < d.N; ++n) {
    entering.push_back(S);
    S = at::matmul(M.select(2, n), S) + E.select(2, n);
  }
  const at::Tensor S_in = at::stack(entering, 2);  // (B, H, N, K, V)

  const at::Tensor scores = D * at::matmul(qc, kc.transpose(-1, -2));
  const at::Tensor o = gamma * at::matmul(qc, S_in) + at::matmul(scores, U - at::matmul(W, S_in));
  return {matrix_state::from_chunks(o, d, v.scalar_type()), S};
}

}  // namespace seqpar
