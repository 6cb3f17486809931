// CPU entry points of the fused chunk kernels of the matrix-state recurrences (gated DeltaNet
// and GLA; matrix_state_params.h). Threads over (batch, head) pairs on the worker pool, and over
// ranges of a pair's chunks with fewer pairs than threads (cpu/chunk_ranges.h); the target is
// the scan engine's, chosen at run time (cpu_scan.h, SEQPAR_CPU_CAPABILITY).
#pragma once

#include "seqpar/kernels/matrix_state_params.h"

namespace seqpar::kernels::cpu {

void matrix_chunk_forward(const MatrixChunkForwardParams& params);
void matrix_chunk_backward(const MatrixChunkBackwardParams& params);

}  // namespace seqpar::kernels::cpu
