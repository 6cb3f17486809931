// See decayed_scores.h.
#include "matrix_state/decayed_scores.h"

#include <algorithm>
#include <vector>

namespace seqpar::matrix_state {
namespace {

constexpr double kMinLogDecay = -40.0;

}  // namespace

void check_scores_chunk(const char* op, const Dims& d) {
  TORCH_CHECK(d.C <= kScoresSub || d.C % kScoresSub == 0, op,
              ": argument 'chunk_size' must be at most ", kScoresSub, " or a multiple of ",
              kScoresSub, ", got ", d.C);
}


// A[t, s] for one chunk (inclusive lower triangle), shaped (B, H, N, C, C), assembled from
// blocks of sub-chunks (query sub-chunk j, key sub-chunk i): its own diagonal blocks in float64,
// the blocks below the diagonal by the factorization
//   exp(G_t - G_s) = exp(G_t - E_{j-1}) * exp(E_{j-1} - E_i) * exp(E_i - G_s),
// with E_i the value of G at the end of sub-chunk i: every factor is at most 1 (G does not
// increase), the first and last are computed once per sub-chunk and the middle one is a
// K-vector per block. The sub-chunks are views from one unbind, so backward gathers their
// gradients with one stack instead of a full-size zero tensor per slice.
at::Tensor intra_chunk_scores(const at::Tensor& q, const at::Tensor& k, const at::Tensor& g,
                              const at::Tensor& G, const Dims& d) {
  const int64_t c = std::min(d.C, kScoresSub), n = d.C / c;
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

}  // namespace seqpar::matrix_state
