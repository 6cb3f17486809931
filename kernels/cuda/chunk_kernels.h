// Host-side declarations shared by the chunk kernels' translation units (chunk_delta_rule.cu,
// chunk_gla.cu, cuda_matrix_state.cu): shared-memory sizes, the backward's scratch layout and
// the launchers. Each launcher returns a cudaError_t as int (0 = success).
#pragma once

#include <cstddef>
#include <cstdint>

#include "seqpar/kernels/matrix_state_params.h"

namespace seqpar::kernels::cuda::chunk {

// The backward's global scratch, in the compute type. Per V-tile partial sums of the gradients
// of the V-independent inputs (V-tiles are summed, scaled, run through the reverse running sum
// of g and converted by the finalize kernels), and per CTA the carried state gradient (two
// K x VT buffers) and, for GLA one kChunk x K temporary, for KDA three.
struct BackwardScratch {
  void* dq = nullptr;     // (V-tiles, B, H, N * 64, K)
  void* dk = nullptr;     // (V-tiles, B, H, N * 64, K)
  void* dg = nullptr;     // (V-tiles, B, H, N * 64, K or 1): dG before the running sum (K: GLA, KDA)
  void* dbeta = nullptr;  // (V-tiles, B, H, N * 64), gated DeltaNet and KDA
  void* ds = nullptr;     // (CTAs, 2, K, VT)
  void* tmp = nullptr;    // (CTAs, 64, K) for GLA, (CTAs, 3, 64, K) for KDA
};

// Columns of the state per CTA for a dtype (64; 32 for float64).
int value_tile(ScalarKind dtype);
// Dynamic shared memory of one CTA, in bytes (0: dtype not handled).
// The delta rule's: gated DeltaNet, or KDA with key_decay (a decay per key channel).
size_t delta_smem_bytes(ScalarKind dtype, int key, bool backward, bool key_decay);
size_t gla_smem_bytes(ScalarKind dtype, int key, bool backward);
// Bytes of BackwardScratch for params' shape and dtype, and its pointers inside `base`.
size_t backward_scratch_bytes(const MatrixChunkBackwardParams& p);
BackwardScratch backward_scratch_at(const MatrixChunkBackwardParams& p, void* base);

// Gated DeltaNet or KDA, after p.recurrence.
int delta_forward(const MatrixChunkForwardParams& p, void* stream);
int delta_backward(const MatrixChunkBackwardParams& p, const BackwardScratch& w, void* stream);
int gla_forward(const MatrixChunkForwardParams& p, void* stream);
int gla_backward(const MatrixChunkBackwardParams& p, const BackwardScratch& w, void* stream);
// Sums the V-tiles' partial gradients into grad_q, grad_k, grad_g (after the reverse running sum
// inside each chunk) and grad_beta.
int finalize_backward(const MatrixChunkBackwardParams& p, const BackwardScratch& w, void* stream);

}  // namespace seqpar::kernels::cuda::chunk
