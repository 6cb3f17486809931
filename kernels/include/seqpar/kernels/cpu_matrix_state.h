// CPU entry points of the fused chunk kernels of the matrix-state recurrences (gated DeltaNet
// and GLA; matrix_state_params.h). Threads over (batch, head) pairs on the kernels' worker pool
// (params.num_threads), each pair's chunks in order; the instruction-set target is the scan
// engine's, chosen at run time (cpu_scan.h, SEQPAR_CPU_CAPABILITY).
#pragma once

#include "seqpar/kernels/matrix_state_params.h"

namespace seqpar::kernels::cpu {

void matrix_chunk_forward(const MatrixChunkForwardParams& params);
void matrix_chunk_backward(const MatrixChunkBackwardParams& params);

}  // namespace seqpar::kernels::cpu
