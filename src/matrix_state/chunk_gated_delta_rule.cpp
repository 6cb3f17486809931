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
// The chunk states: chunk_prefix_maps (matrix_state/chunk_prefix_maps.h) gives every chunk's entering state as an affine
// map of the sequence's, in about 3 sqrt(N) batched products instead of N sequential ones.
#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <vector>

#include "matrix_state/chunk_prefix_maps.h"
#include "matrix_state/chunking.h"
#include "matrix_state/fused_chunks.h"
#include "ops/packed_sequences.h"
#include "matrix_state/slice_summary.h"
#include "seqpar/matrix_state.h"

namespace seqpar {
namespace {

// Per chunk: G (running log decay), gamma, D, the solved U and W, and the summary (M, E).
struct DeltaChunks {
  at::Tensor G, gamma, D, U, W, M, E;
};

DeltaChunks delta_chunks(const at::Tensor& kc, const at::Tensor& vc, const at::Tensor& gc,
                         const at::Tensor& b, const matrix_state::Dims& d) {
  DeltaChunks c;
  c.G = gc.cumsum(3);                    // (B, H, N, C)
  c.gamma = c.G.exp().unsqueeze(-1);     // (B, H, N, C, 1)
  const at::Tensor lower = at::ones({d.C, d.C}, kc.options().dtype(at::kBool)).tril();
  c.D = at::where(lower, c.G.unsqueeze(-1) - c.G.unsqueeze(-2),
                  -std::numeric_limits<double>::infinity())
            .exp();  // (B, H, N, C, C)
  const at::Tensor system =
      at::eye(d.C, kc.options()) + b * (c.D * at::matmul(kc, kc.transpose(-1, -2))).tril(-1);
  c.U = at::linalg_solve_triangular(system, b * vc, /*upper=*/false, /*left=*/true,
                                    /*unitriangular=*/true);
  c.W = at::linalg_solve_triangular(system, (b * c.gamma) * kc, /*upper=*/false, /*left=*/true,
                                    /*unitriangular=*/true);
  const at::Tensor G_last = c.G.narrow(3, d.C - 1, 1);              // (B, H, N, 1)
  const at::Tensor k_bar = kc * (G_last - c.G).exp().unsqueeze(-1);  // (B, H, N, C, K)
  c.M = G_last.exp().unsqueeze(-1) * at::eye(d.K, kc.options()) -
        at::matmul(k_bar.transpose(-1, -2), c.W);                    // (B, H, N, K, K)
  c.E = at::matmul(k_bar.transpose(-1, -2), c.U);                    // (B, H, N, K, V)
  return c;
}

// What both entry points compute before the chunk states: the scaled queries in chunks, the
// per-chunk quantities, and the intra-chunk scores.
struct PreparedChunks {
  at::Tensor qc;
  DeltaChunks c;
  at::Tensor scores;
};

PreparedChunks prepare(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                       const at::Tensor& g, const at::Tensor& beta, std::optional<double> scale,
                       const matrix_state::Dims& d, at::ScalarType dt) {
  const double s = scale.value_or(1.0 / std::sqrt(static_cast<double>(d.K)));
  PreparedChunks p;
  p.qc = matrix_state::to_chunks(q, d, dt) * s;  // (B, H, N, C, K)
  const at::Tensor kc = matrix_state::to_chunks(k, d, dt);
  p.c = delta_chunks(kc, matrix_state::to_chunks(v, d, dt),
                     matrix_state::to_chunks_per_head(g, d, dt),
                     matrix_state::to_chunks_per_head(beta, d, dt).unsqueeze(-1), d);
  p.scores = p.c.D * at::matmul(p.qc, kc.transpose(-1, -2));
  return p;
}

// o = diag(gamma) Q S + (D * Q K^T)(U - W S) for the states S_in (B, H, N, K, V) entering the
// chunks, as (B, T, H, V) in `out`.
at::Tensor chunk_outputs(const PreparedChunks& p, const at::Tensor& S_in,
                         const matrix_state::Dims& d, at::ScalarType out) {
  const at::Tensor o = p.c.gamma * at::matmul(p.qc, S_in) +
                       at::matmul(p.scores, p.c.U - at::matmul(p.c.W, S_in));
  return matrix_state::from_chunks(o, d, out);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> chunk_gated_delta_rule(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
    const at::Tensor& beta, std::optional<double> scale,
    const std::optional<at::Tensor>& initial_state, int64_t chunk_size,
    const std::optional<at::Tensor>& cu_seqlens) {
  constexpr const char* op = "seqpar.chunk_gated_delta_rule";
  const matrix_state::Dims d = matrix_state::check_qkv(op, q, k, v, chunk_size);
  matrix_state::check_per_step(op, "g", g, q, d, std::nullopt);
  matrix_state::check_per_step(op, "beta", beta, q, d, std::nullopt);
  const auto cu = ops::check_cu_seqlens(op, cu_seqlens, d.B, d.T);
  if (initial_state && initial_state->defined())
    matrix_state::check_state(op, *initial_state, q, d, cu);
  if (matrix_state::use_fused_chunks("gated_delta", q, v, chunk_size)) {
    return matrix_state::fused_chunk_recurrence(
        "gated_delta", q, k, v, g, beta,
        scale.value_or(1.0 / std::sqrt(static_cast<double>(d.K))), initial_state, chunk_size, cu);
  }
  if (cu) {
    return matrix_state::run_per_sequence(
        *cu, {q, k, v, g, beta}, initial_state,
        [&](const std::vector<at::Tensor>& x, const std::optional<at::Tensor>& init) {
          return chunk_gated_delta_rule(x[0], x[1], x[2], x[3], x[4], scale, init, chunk_size);
        });
  }
  const at::ScalarType dt = matrix_state::compute_dtype(q.scalar_type());
  at::Tensor S = matrix_state::initial_state_or_zeros(initial_state, q, d, dt);
  if (d.N == 0) return {at::empty({d.B, 0, d.H, d.V}, v.options()), S.clone()};

  const PreparedChunks p = prepare(q, k, v, g, beta, scale, d, dt);
  // The states entering each chunk (B, H, N, K, V), and the final state.
  const bool from_zero = !(initial_state && initial_state->defined());
  const matrix_state::ChunkMaps maps = matrix_state::chunk_prefix_maps(p.c.M, p.c.E, /*with_P=*/!from_zero);
  const at::Tensor S_in = from_zero ? maps.Z : at::matmul(maps.P, S.unsqueeze(2)) + maps.Z;
  S = from_zero ? maps.E_total : at::matmul(maps.M_total, S) + maps.E_total;
  return {chunk_outputs(p, S_in, d, v.scalar_type()), S};
}

GatedDeltaSlice gated_delta_rule_slice(const at::Tensor& q, const at::Tensor& k,
                                       const at::Tensor& v, const at::Tensor& g,
                                       const at::Tensor& beta, std::optional<double> scale,
                                       int64_t chunk_size) {
  constexpr const char* op = "seqpar.sp.chunk_gated_delta_rule";
  const matrix_state::Dims d = matrix_state::check_qkv(op, q, k, v, chunk_size);
  const at::ScalarType dt = matrix_state::compute_dtype(k.scalar_type());
  const auto opts = k.options().dtype(dt);
  GatedDeltaSlice slice;
  if (d.N == 0) {
    // Identity built from the inputs (sums over no steps) so that autograd still reaches this
    // rank's backward collectives.
    const at::Tensor k0 = k.to(dt).narrow(1, 0, 0), v0 = v.to(dt).narrow(1, 0, 0);
    slice.M = at::eye(d.K, opts) - at::einsum("bthk,bthj->bhkj", {k0, k0});
    slice.E = at::einsum("bthk,bthv->bhkv", {k0, v0});
    // The empty output is built from x too: a loss that reads only the outputs must still
    // reach the collective backward of the exchange that produced x.
    slice.finish = [M = slice.M, E = slice.E, out = v.scalar_type()](const at::Tensor& x) {
      return std::make_tuple(x.sum(2).unsqueeze(1).narrow(1, 0, 0).to(out),
                             at::matmul(M, x) + E);
    };
    return slice;
  }
  const PreparedChunks p = prepare(q, k, v, g, beta, scale, d, dt);
  // P_n (the map from the slice's entering state to chunk n's) and Z_n (chunk n's entering
  // state from a zero state), and the slice's summary.
  const matrix_state::ChunkMaps maps = matrix_state::chunk_prefix_maps(p.c.M, p.c.E, /*with_P=*/true);
  slice.M = maps.M_total;
  slice.E = maps.E_total;
  slice.finish = [p, maps, d, out = v.scalar_type()](const at::Tensor& x) {
    const at::Tensor S_in = at::matmul(maps.P, x.unsqueeze(2)) + maps.Z;  // (B, H, N, K, V)
    return std::make_tuple(chunk_outputs(p, S_in, d, out),
                           at::matmul(maps.M_total, x) + maps.E_total);
  };
  return slice;
}

}  // namespace seqpar
