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
#include "ops/op_handles.h"
#include "seqpar/matrix_state.h"

namespace seqpar {
namespace {

constexpr int64_t kSub = 16;
constexpr double kMinLogDecay = -40.0;

// A[t, s] for one chunk (inclusive lower triangle), shaped (B, H, N, C, C), built one row block
// (sub-chunk j of the queries) at a time: the keys before it relative to its start, its own
// diagonal block in float64, zeros after it.
at::Tensor intra_chunk_scores(const at::Tensor& q, const at::Tensor& k, const at::Tensor& g,
                              const at::Tensor& G, const matrix_state::Dims& d) {
  const int64_t c = std::min(d.C, kSub), n = d.C / c;
  const std::vector<int64_t> sub{d.B, d.H, d.N, n, c, d.K};
  // Own sub-chunk, float64 with clamped decays, relative to the sub-chunk's start.
  const at::Tensor Gd = g.to(at::kDouble).clamp_min(kMinLogDecay).reshape(sub).cumsum(-2);
  const at::Tensor q_hat = q.to(at::kDouble).reshape(sub) * Gd.exp();
  const at::Tensor k_hat = k.to(at::kDouble).reshape(sub) * (-Gd).exp();
  const at::Tensor diag = at::matmul(q_hat, k_hat.transpose(-1, -2)).tril().to(q.scalar_type());
  std::vector<at::Tensor> rows;
  for (int64_t j = 0; j < n; ++j) {
    std::vector<at::Tensor> blocks;
    if (j > 0) {
      // G at the start of sub-chunk j (the end of sub-chunk j - 1): both factors <= 1.
      const at::Tensor G_ref = G.narrow(3, j * c - 1, 1);
      const at::Tensor q_rel = q.narrow(3, j * c, c) * (G.narrow(3, j * c, c) - G_ref).exp();
      const at::Tensor k_rel = k.narrow(3, 0, j * c) * (G_ref - G.narrow(3, 0, j * c)).exp();
      blocks.push_back(at::matmul(q_rel, k_rel.transpose(-1, -2)));  // (B, H, N, c, j c)
    }
    blocks.push_back(diag.select(3, j));
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
                                             int64_t chunk_size) {
  constexpr const char* op = "seqpar.chunk_gla";
  const matrix_state::Dims d = matrix_state::check_qkv(op, q, k, v, chunk_size);
  matrix_state::check_per_step(op, "g", g, q, d, d.K);
  if (initial_state && initial_state->defined()) matrix_state::check_state(op, *initial_state, q, d);
  TORCH_CHECK(d.C <= kSub || d.C % kSub == 0, op, ": argument 'chunk_size' must be at most ",
              kSub, " or a multiple of ", kSub, ", got ", d.C);
  const at::ScalarType dt = matrix_state::compute_dtype(q.scalar_type());
  const double s = scale.value_or(1.0 / std::sqrt(static_cast<double>(d.K)));
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
      decay.flatten(0, 1), E.flatten(0, 1), S0.flatten(0, 1), /*reverse=*/false);
  const at::Tensor entering =
      at::cat({S0.flatten(0, 1).unsqueeze(1), states.narrow(1, 0, d.N - 1)}, 1)
          .view({d.B, d.H, d.N, d.K, d.V});

  const at::Tensor o = at::matmul(qc * G.exp(), entering) +
                       at::matmul(intra_chunk_scores(qc, kc, gc, G, d), vc);
  return {matrix_state::from_chunks(o, d, v.scalar_type()),
          final_state.view({d.B, d.H, d.K, d.V})};
}

}  // namespace seqpar
