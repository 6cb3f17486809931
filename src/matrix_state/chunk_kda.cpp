// Chunked Kimi Delta Attention (KDA; seqpar/matrix_state.h): the delta rule with a decay per
// key channel, S_t = (I - beta_t k_t k_t^T) diag(exp(g_t)) S_{t-1} + beta_t k_t v_t^T.
//
// Gated DeltaNet's chunk form (chunk_gated_delta_rule.cpp) with GLA's per-channel decays. With
// G_t the running sum of g inside the chunk (a K-vector), Gamma_t = diag(exp(G_t)) and S the
// state entering the chunk, write the step as S_t = diag(exp(g_t)) S_{t-1} + k_t w_t^T. Then
//   S_t = Gamma_t S + sum_{s <= t} Gamma_t Gamma_s^-1 k_s w_s^T,
// and the pseudo-values solve one unit lower triangular system per chunk:
//   (I + diag(beta) strictly_lower(A)) w = diag(beta) V - diag(beta) (K * exp(G)) S,
//   A[t, s] = sum_c k_tc k_sc exp(G_tc - G_sc),
// so w = U - W S with U, W independent of S. Then, with B[t, s] = sum_c q_tc k_sc
// exp(G_tc - G_sc) (s <= t),
//   o  = (Q * exp(G)) S + B (U - W S),
//   S' = M S + E,  M = diag(exp(G_C)) - Kbar^T W,  E = Kbar^T U,  Kbar = K * exp(G_C - G).
// A and B are GLA's decayed scores (matrix_state/decayed_scores.h, which never forms exp(-G));
// every other exponential is of a non-positive number. The chunk states come from
// chunk_prefix_maps.
//
// CPU (and Meta) tensors run the fused chunk kernels (fused_chunks.h: kernels/cpu/
// chunk_delta_rule.cpp with a decay per key channel; autograd keeps the inputs and the chunk
// states only, packed sequences in one pass). CUDA tensors run the CUDA chunk kernels
// (kernels/cuda/chunk_delta_rule.cu with a decay per key channel) for the shapes they take
// (chunk 64, K and V in {64, 128}, the dtype, shared memory on the device: use_fused_chunks),
// packed or not; any other shape runs the ATen composition below (autograd through it; packed
// sequences once per sequence). The CUDA kernels are verified on the host emulator only, not
// yet on a GPU (docs/matrix_state.md, "KDA").
#include <ATen/ATen.h>

#include <cmath>

#include "matrix_state/chunk_prefix_maps.h"
#include "matrix_state/chunking.h"
#include "matrix_state/decayed_scores.h"
#include "matrix_state/fused_chunks.h"
#include "ops/packed_sequences.h"
#include "seqpar/matrix_state.h"

namespace seqpar {

std::tuple<at::Tensor, at::Tensor> chunk_kda(const at::Tensor& q, const at::Tensor& k,
                                             const at::Tensor& v, const at::Tensor& g,
                                             const at::Tensor& beta, std::optional<double> scale,
                                             const std::optional<at::Tensor>& initial_state,
                                             int64_t chunk_size,
                                             const std::optional<at::Tensor>& cu_seqlens) {
  constexpr const char* op = "seqpar.chunk_kda";
  const matrix_state::Dims d = matrix_state::check_qkv(op, q, k, v, chunk_size);
  matrix_state::check_per_step(op, "g", g, q, d, d.K);
  matrix_state::check_per_step(op, "beta", beta, q, d, std::nullopt);
  matrix_state::check_scores_chunk(op, d);
  const auto cu = ops::check_cu_seqlens(op, cu_seqlens, d.B, d.T);
  if (initial_state && initial_state->defined())
    matrix_state::check_state(op, *initial_state, q, d, cu);
  const double s = scale.value_or(1.0 / std::sqrt(static_cast<double>(d.K)));
  if (matrix_state::use_fused_chunks("kda", q, v, chunk_size))
    return matrix_state::fused_chunk_recurrence("kda", q, k, v, g, beta, s, initial_state,
                                                chunk_size, cu);
  if (cu) {
    TORCH_CHECK(ops::holds_values(*cu), op,
                ": packed sequences ('cu_seqlens') cannot be traced with fake tensors yet: KDA "
                "runs them once per sequence, which needs the boundaries' values");
    return matrix_state::run_per_sequence(
        *cu, {q, k, v, g, beta}, initial_state,
        [&](const std::vector<at::Tensor>& x, const std::optional<at::Tensor>& init) {
          return chunk_kda(x[0], x[1], x[2], x[3], x[4], s, init, chunk_size);
        });
  }
  const at::ScalarType dt = matrix_state::compute_dtype(q.scalar_type());
  const at::Tensor S0 = matrix_state::initial_state_or_zeros(initial_state, q, d, dt);
  if (d.N == 0) return {at::empty({d.B, 0, d.H, d.V}, v.options()), S0.clone()};

  const at::Tensor qc = matrix_state::to_chunks(q, d, dt) * s;  // (B, H, N, C, K)
  const at::Tensor kc = matrix_state::to_chunks(k, d, dt);
  const at::Tensor vc = matrix_state::to_chunks(v, d, dt);       // (B, H, N, C, V)
  const at::Tensor gc = matrix_state::to_chunks(g, d, dt);
  const at::Tensor b = matrix_state::to_chunks_per_head(beta, d, dt).unsqueeze(-1);
  const at::Tensor G = gc.cumsum(3);
  const at::Tensor G_last = G.narrow(3, d.C - 1, 1);             // (B, H, N, 1, K)

  const at::Tensor A = matrix_state::intra_chunk_scores(kc, kc, gc, G, d).tril(-1);
  const at::Tensor system = at::eye(d.C, kc.options()) + b * A;
  const at::Tensor U = at::linalg_solve_triangular(system, b * vc, /*upper=*/false,
                                                   /*left=*/true, /*unitriangular=*/true);
  const at::Tensor W = at::linalg_solve_triangular(system, b * (kc * G.exp()), /*upper=*/false,
                                                   /*left=*/true, /*unitriangular=*/true);
  const at::Tensor k_bar = kc * (G_last - G).exp();
  const at::Tensor M = at::diag_embed(G_last.squeeze(3).exp()) -
                       at::matmul(k_bar.transpose(-1, -2), W);   // (B, H, N, K, K)
  const at::Tensor E = at::matmul(k_bar.transpose(-1, -2), U);   // (B, H, N, K, V)

  const bool from_zero = !(initial_state && initial_state->defined());
  const matrix_state::ChunkMaps maps = matrix_state::chunk_prefix_maps(M, E, !from_zero);
  const at::Tensor S_in = from_zero ? maps.Z : at::matmul(maps.P, S0.unsqueeze(2)) + maps.Z;
  const at::Tensor S = from_zero ? maps.E_total : at::matmul(maps.M_total, S0) + maps.E_total;
  const at::Tensor scores = matrix_state::intra_chunk_scores(qc, kc, gc, G, d);
  const at::Tensor o = at::matmul(qc * G.exp(), S_in) +
                       at::matmul(scores, U - at::matmul(W, S_in));
  return {matrix_state::from_chunks(o, d, v.scalar_type()), S};
}

}  // namespace seqpar
