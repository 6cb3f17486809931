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
// The chunk states: chunk_prefix_maps below gives every chunk's entering state as an affine
// map of the sequence's, in about 3 sqrt(N) batched products instead of N sequential ones.
#include <ATen/ATen.h>

#include <cmath>
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

// For chunk maps S -> M_n S + E_n (M (B, H, N, K, K), E (B, H, N, K, V)), the map entering
// each chunk from the start, S_n = P_n S_0 + Z_n (P_n = M_{n-1} ... M_0, P_0 = I, Z_0 = 0), and
// the whole run's (M_total, E_total). Two levels, each a sequential loop of batched products:
// groups of L ~ sqrt(N) chunks are scanned side by side (L steps), then the group totals in
// order (N / L steps), then one batched product combines them. A loop over the N chunks would
// be N dependent small products: N kernel launches each way on a GPU (16,384 at 2^20 tokens in
// chunks of 64). The padding of the last group is identity maps.
struct ChunkMaps {
  at::Tensor P, Z, M_total, E_total;
};

ChunkMaps chunk_prefix_maps(const at::Tensor& M, const at::Tensor& E) {
  const int64_t B = M.size(0), H = M.size(1), N = M.size(2), K = M.size(3), V = E.size(4);
  const int64_t L = static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(N))));
  const int64_t G = (N + L - 1) / L, pad = G * L - N;
  const at::Tensor eye = at::eye(K, M.options());
  at::Tensor Mp = M, Ep = E;
  if (pad > 0) {
    Mp = at::cat({M, eye.expand({B, H, pad, K, K})}, 2);
    Ep = at::cat({E, at::zeros({B, H, pad, K, V}, E.options())}, 2);
  }
  // Inside the groups, side by side: (B, H, G, ...) per step l. unbind, not select: the
  // backward of many selects would allocate a full-size gradient each; unbind's stacks once.
  const std::vector<at::Tensor> Ml = Mp.reshape({B, H, G, L, K, K}).unbind(3),
                                El = Ep.reshape({B, H, G, L, K, V}).unbind(3);
  at::Tensor P = eye.expand({B, H, G, K, K}), Z = at::zeros({B, H, G, K, V}, E.options());
  std::vector<at::Tensor> P_in, Z_in;
  for (int64_t l = 0; l < L; ++l) {
    P_in.push_back(P);
    Z_in.push_back(Z);
    P = at::matmul(Ml[l], P);
    Z = at::matmul(Ml[l], Z) + El[l];
  }
  // The groups in order: the map entering each group.
  const std::vector<at::Tensor> Mg = P.unbind(2), Eg = Z.unbind(2);
  at::Tensor PG = eye.expand({B, H, K, K}), ZG = at::zeros({B, H, K, V}, E.options());
  std::vector<at::Tensor> PG_in, ZG_in;
  for (int64_t g = 0; g < G; ++g) {
    PG_in.push_back(PG);
    ZG_in.push_back(ZG);
    PG = at::matmul(Mg[g], PG);
    ZG = at::matmul(Mg[g], ZG) + Eg[g];
  }
  const at::Tensor local_P = at::stack(P_in, 3), local_Z = at::stack(Z_in, 3);  // (B, H, G, L, ...)
  const at::Tensor group_P = at::stack(PG_in, 2).unsqueeze(3), group_Z = at::stack(ZG_in, 2).unsqueeze(3);
  ChunkMaps maps;
  maps.P = at::matmul(local_P, group_P).view({B, H, G * L, K, K}).narrow(2, 0, N);
  maps.Z = (at::matmul(local_P, group_Z) + local_Z).view({B, H, G * L, K, V}).narrow(2, 0, N);
  maps.M_total = PG;
  maps.E_total = ZG;
  return maps;
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

  // The states entering each chunk (B, H, N, K, V), and the final state.
  const ChunkMaps maps = chunk_prefix_maps(c.M, c.E);
  const bool from_zero = !(initial_state && initial_state->defined());
  const at::Tensor S_in = from_zero ? maps.Z : at::matmul(maps.P, S.unsqueeze(2)) + maps.Z;
  S = from_zero ? maps.E_total : at::matmul(maps.M_total, S) + maps.E_total;

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
  // P_n (the map from the slice's entering state to chunk n's) and Z_n (chunk n's entering
  // state from a zero state), and the slice's summary.
  const ChunkMaps maps = chunk_prefix_maps(c.M, c.E);
  slice.M = maps.M_total;
  slice.E = maps.E_total;
  const at::Tensor prefix = maps.P, zero_state = maps.Z;  // (B, H, N, K, *)
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
