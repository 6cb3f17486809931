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

}  // namespace

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
  const DeltaChunks c = delta_chunks(
      kc, matrix_state::to_chunks(v, d, dt),
      matrix_state::to_chunks_per_head(g, d, dt),
      matrix_state::to_chunks_per_head(beta, d, dt).unsqueeze(-1), d);

  // The states entering each chunk, in order. unbind, not select: the backward of N selects
  // would allocate N full-size gradients (quadratic in T); unbind's stacks them once.
  const std::vector<at::Tensor> Ms = c.M.unbind(2), Es = c.E.unbind(2);
  std::vector<at::Tensor> entering;
  entering.reserve(d.N);
  for (int64_t n = 0; n < d.N; ++n) {
    entering.push_back(S);
    S = at::matmul(Ms[n], S) + Es[n];
  }
  const at::Tensor S_in = at::stack(entering, 2);  // (B, H, N, K, V)

  const at::Tensor scores = c.D * at::matmul(qc, kc.transpose(-1, -2));
  const at::Tensor o =
      c.gamma * at::matmul(qc, S_in) + at::matmul(scores, c.U - at::matmul(c.W, S_in));
  return {matrix_state::from_chunks(o, d, v.scalar_type()), S};
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
    slice.finish = [M = slice.M, E = slice.E, d, v](const at::Tensor& x) {
      return std::make_tuple(at::empty({d.B, 0, d.H, d.V}, v.options()), at::matmul(M, x) + E);
    };
    return slice;
  }
  const double s = scale.value_or(1.0 / std::sqrt(static_cast<double>(d.K)));
  const at::Tensor qc = matrix_state::to_chunks(q, d, dt) * s;  // (B, H, N, C, K)
  const at::Tensor kc = matrix_state::to_chunks(k, d, dt);
  const DeltaChunks c = delta_chunks(
      kc, matrix_state::to_chunks(v, d, dt), matrix_state::to_chunks_per_head(g, d, dt),
      matrix_state::to_chunks_per_head(beta, d, dt).unsqueeze(-1), d);
  // Both chains in one pass over the chunks: P_n = M_{n-1} ... M_0 (the map from the slice's
  // entering state to chunk n's) and Z_n, chunk n's entering state from a zero state.
  const std::vector<at::Tensor> Ms = c.M.unbind(2), Es = c.E.unbind(2);
  at::Tensor P = at::eye(d.K, opts).expand({d.B, d.H, d.K, d.K}), Z = at::zeros({d.B, d.H, d.K, d.V}, opts);
  std::vector<at::Tensor> P_in, Z_in;
  P_in.reserve(d.N);
  Z_in.reserve(d.N);
  for (int64_t n = 0; n < d.N; ++n) {
    P_in.push_back(P);
    Z_in.push_back(Z);
    P = at::matmul(Ms[n], P);
    Z = at::matmul(Ms[n], Z) + Es[n];
  }
  slice.M = P;
  slice.E = Z;
  const at::Tensor prefix = at::stack(P_in, 2), zero_state = at::stack(Z_in, 2);  // (B, H, N, K, *)
  const at::Tensor scores = c.D * at::matmul(qc, kc.transpose(-1, -2));
  slice.finish = [c, qc, scores, prefix, zero_state, d, M = slice.M, E = slice.E,
                  out_dtype = v.scalar_type()](const at::Tensor& x) {
    const at::Tensor S_in = at::matmul(prefix, x.unsqueeze(2)) + zero_state;  // (B, H, N, K, V)
    const at::Tensor o =
        c.gamma * at::matmul(qc, S_in) + at::matmul(scores, c.U - at::matmul(c.W, S_in));
    return std::make_tuple(matrix_state::from_chunks(o, d, out_dtype), at::matmul(M, x) + E);
  };
  return slice;
}

}  // namespace seqpar
