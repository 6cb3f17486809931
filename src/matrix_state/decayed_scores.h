// Decayed scores A[t, s] = sum_k x_tk y_sk exp(G_tk - G_sk) inside each chunk, for recurrences
// with a decay per key channel (GLA: x = q, y = k; KDA: also x = y = k for its delta-rule
// system), without overflow.
//
// A[t, s] must not be formed as (q_t exp(G_t)) . (k_s exp(-G_s)): exp(-G_s) overflows once the
// decay over a chunk passes the dtype's range (float32: a product of decays below e^-88). The
// chunk is cut into sub-chunks of kScoresSub = 16 steps:
// - s in an earlier sub-chunk than t: both factors are taken relative to the start of t's
//   sub-chunk, exp(G_t - G_ref) <= 1 and exp(G_ref - G_s) <= 1, so nothing overflows and
//   the block is one batched matrix product;
// - s in t's own sub-chunk: relative to the sub-chunk's start in float64 with each step's
//   log decay clamped at kMinLogDecay = -40, so the factors stay within e^(+-640). A decay
//   below e^-40 per step then acts as e^-40: the state it multiplies is scaled by 4e-18
//   instead of less, a change far below float64's resolution of the terms it is added to.
#pragma once

#include <ATen/ATen.h>

#include "matrix_state/chunking.h"

namespace seqpar::matrix_state {

constexpr int64_t kScoresSub = 16;

// chunk_size must be at most kScoresSub or a multiple of it: an error naming 'chunk_size'.
void check_scores_chunk(const char* op, const Dims& d);

// A (B, H, N, C, C), inclusive lower triangle, for x, y (B, H, N, C, K) in chunks, g their
// log decays in chunks and G = g.cumsum(3).
at::Tensor intra_chunk_scores(const at::Tensor& x, const at::Tensor& y, const at::Tensor& g,
                              const at::Tensor& G, const Dims& d);

}  // namespace seqpar::matrix_state
