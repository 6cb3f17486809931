// CUDA entry points of the 2x2 block scan (block_scan_params.h): h_t = A_t h_{t-1} + b_t with a
// 2x2 A_t per (batch, time, channel). Same calling convention as the diagonal scan
// (cuda_scan.h): each call launches on `stream` (a cudaStream_t passed as void*, so that host
// code needs no CUDA header) and returns without synchronizing; the result is 0 or a
// cudaError_t value (cudaErrorInvalidValue for complex64, negative sizes or a missing
// required operand).
//
// How: a chunked three-phase scan of every (batch, channel) sequence (kernels/cuda/
// block_scan.cu): each thread composes the 2x2 affine map of one time chunk, one thread per
// sequence scans the chunk maps in order, then each thread reruns its chunk from its entering
// state. The results do not depend on timing (bitwise reproducible), so `deterministic` has
// nothing to change; num_threads is CPU-only and ignored. Scratch for the chunk maps comes from
// cudaMallocAsync on `stream` and is returned with cudaFreeAsync behind the kernels (none when
// a sequence is one chunk).
#pragma once

#include "seqpar/kernels/block_scan_params.h"

namespace seqpar::kernels::cuda {

int block_scan_forward(const BlockScanForwardParams& params, void* stream);
int block_scan_backward(const BlockScanBackwardParams& params, void* stream);
int block_scan_summary(const BlockScanSummaryParams& params, void* stream);

}  // namespace seqpar::kernels::cuda
