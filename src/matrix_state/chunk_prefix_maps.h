// The chunk states of a recurrence whose chunks are affine maps of a matrix state.
//
// For chunk maps S -> M_n S + E_n (M (B, H, N, K, K), E (B, H, N, K, V)), the map entering
// each chunk from the start, S_n = P_n S_0 + Z_n (P_n = M_{n-1} ... M_0, P_0 = I, Z_0 = 0), and
// the whole run's (M_total, E_total). Two levels, each a sequential loop of batched products:
// groups of L ~ sqrt(N) chunks are scanned side by side (L steps), then the group totals in
// order (N / L steps), then one batched product combines them. A loop over the N chunks would
// be N dependent small products: N kernel launches each way on a GPU (16,384 at 2^20 tokens in
// chunks of 64). The padding of the last group is identity maps. P is left undefined unless
// with_P (a run from a zero state needs only Z).
#pragma once

#include <ATen/ATen.h>

namespace seqpar::matrix_state {

struct ChunkMaps {
  at::Tensor P, Z, M_total, E_total;
};

ChunkMaps chunk_prefix_maps(const at::Tensor& M, const at::Tensor& E, bool with_P);

}  // namespace seqpar::matrix_state
