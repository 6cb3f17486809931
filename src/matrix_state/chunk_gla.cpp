// Chunked gated linear attention (seqpar/matrix_state.h; the math in docs/design.md
// section 3).
//
// Per head, with G_t the running sum of g inside the chunk (so exp(G_t) is the decay from the
// chunk's start to step t, per key channel) and S the state entering the chunk:
//   o_t     = (q_t * exp(G_t))^T S  +  sum_{s <= t} A[t, s] v_s,
//   A[t, s] = sum_k q_tk k_sk exp(G_tk - G_sk),
//   S'      = diag(exp(G_C)) S + sum_s (k_s * exp(G_C - G_s)) v_s^T.
// The chunk states S are a diagonal recurrence over chunks, run by seqpar's own scan.
//
// A[t, s] must not be formed as (q_t exp(G_t)) . (k_s exp(-G_s)): exp(-G_s) overflows once the
// decay over a chunk passes the dtype's range (float32: a product of decays below e^-88). The
// chunk is cut into sub-chunks of kSub steps:
// - s in an earlier sub-chunk than t: both factors are taken relative to the start of t's
//   sub-chunk, exp(G_t - G_ref) <= 1 and exp(G_ref - G_s) <= 1, so nothing overflows and
//   the block is one batched matrix product;
// - s in t's own sub-chunk: relative to the sub-chunk's start in float64 with each step's
//   log decay clamped at kMinLogDecay = -40, so the factors stay within e^(+-640). A decay
//   below e^-40 per step then acts as e^-40: the state it multiplies is scaled by 4e-18
//   instead of less, a change far below float64's resolution of the terms it is added to.
#include <ATen/ATen.h>

#include <limits>

#include "matrix_state/chunking.h"
#include "matrix_state/fused_chunks.h"
#include "ops/packed_sequences.h"
#include "ops/op_handles.h"
#include "seqpar/matrix_state.h"

namespace seqpar {
namespace {

constexpr int64_t kSub = 16;
constexpr double kMinLogDecay = -40.0;

// A[t, s] for one chunk (inclusive lower triangle), shaped (B, H, N, C, C), assembled from
// blocks of sub-chunks (query sub-chunk j, key sub-chunk i): its own diagonal blocks in float64,
// the blocks below the diagonal by the factorization
//   exp(G_t - G_s) = exp(G_t - E_{j-1}) * exp(E_{j-1} - E_i) * exp(E_i - G_s),
// with E_i the value of G at the end of sub-chunk i: every factor is at most 1 (G does not
// increase), the first and last are computed once per sub-chunk and the middle one is a
// K-vector per block. The sub-chunks are views from one unbind, so backward gathers their
// gradients with one stack instead of a full-size zero tensor per slice.
at::Tensor intra_chunk_scores(const at::Tensor& q, const at::Tensor& k, const at::Tensor& g,
                              const at::Tensor& G, const matrix_state::Dims& d) {
  const int64_t c = std::min(d.C, kSub), n = d.C / c;
  const std::vector<int64_t> sub{d.B, d.H, d.N, n, c, d.K};
  // Own sub-chunk, float64 with clamped decays, relative to the sub-chunk's start.
  const at::Tensor Gd = g.to(at::kDouble).clamp_min(kMinLogDecay).reshape(sub).cumsum(-2);
  const at::Tensor q_hat = q.to(at::kDouble).reshape(sub) * Gd.exp();
  const at::Tensor k_hat = k.to(at::kDouble).reshape(sub) * (-Gd).exp();
  const std::vector<at::Tensor> diag =
      at::matmul(q_hat, k_hat.transpose(-1, -2)).tril().to(q.scalar_type()).unbind(3);
  if (n == 1) return diag[0];
  const at::Tensor Gs = G.reshape(sub);
  // G at each sub-chunk's end, (B, H, N, 1, K) each.
  const std::vector<at::Tensor> Es = Gs.narrow(4, c - 1, 1).unbind(3);
  const std::vector<at::Tensor> qs = q.reshape(sub).unbind(3), ks = k.reshape(sub).unbind(3),
                                Gj = Gs.unbind(3);
  std::vector<at::Tensor> rows;
  std::vector<at::Tensor> k_end;  // keys relative to the end of their sub-chunk (all but the last)
  for (int64_t j = 0; j < n; ++j) {
    std::vector<at::Tensor> blocks;
    if (j > 0) {
      k_end.push_back(ks[j - 1] * (Es[j - 1] - Gj[j - 1]).exp());
      // queries relative to the end of the previous sub-chunk
      const at::Tensor q_rel = qs[j] * (Gj[j] - Es[j - 1]).exp();
      for (int64_t i = 0; i < j; ++i) {
        const at::Tensor between = (Es[j - 1] - Es[i]).exp();  // (B, H, N, 1, K), at most 1
        blocks.push_back(at::matmul(q_rel * between, k_end[i].transpose(-1, -2)));
      }
    }
    blocks.push_back(diag[j]);
    if (j + 1 < n) blocks.push_back(at::zeros({d.B, d.H, d.N, c, (n - j - 1) * c}, q.options()));
    rows.push_back(at::cat(blocks, -1));
  }
  return at::cat(rows, 3);  // (B, H, N, C, C)
}

}  // namespace

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
  TORCH_CHECK(d.C <= kSub || d.C % kSub == 0, op, ": argument 'chunk_size' must be at most ",
              kSub, " or a multiple of ", kSub, ", got ", d.C);
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
                       at::matmul(intra_chunk_scores(qc, kc, gc, G, d), vc);
  return {matrix_state::from_chunks(o, d, v.scalar_type()),
          final_state.view({d.B, d.H, d.K, d.V})};
}

}  // namespace seqpar
