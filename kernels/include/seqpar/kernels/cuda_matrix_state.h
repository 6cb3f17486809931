// CUDA entry points of the fused chunk kernels of the matrix-state recurrences (gated DeltaNet,
// KDA and GLA; matrix_state_params.h, kernels/cuda/chunk_*.cu). Each launches on the given stream
// and returns without synchronizing. The stream is a cudaStream_t passed as void*, as in
// cuda_scan.h, so that host code includes no CUDA header. params.gemm and params.num_threads
// are the CPU kernels' and are ignored here.
//
// What runs: chunk 64, K and V in {64, 128}, float32 / float64 / bfloat16 / float16 inputs,
// when the kernels' shared memory fits the current device (matrix_chunk_unsupported says why
// not otherwise; callers then take another path). The backward needs a scratch buffer
// (matrix_chunk_backward_workspace_size bytes, 256-byte aligned, stream-ordered lifetime);
// without one it takes it from cudaMallocAsync on the stream and frees it behind the kernels.
//
// Packed sequences (shape.segment_bounds, a host array): the kernels cut every segment into its
// own chunks, as the CPU kernels do, and read those chunks from a table in device memory,
// shape.chunk_table: matrix_chunk_table_size(shape) int64 values that fill_matrix_chunk_table
// writes on the host from segment_bounds, for the caller to copy to the device (layout in
// kernels/cuda/chunk_tiles.cuh). A segmented shape without its table is refused.
#pragma once

#include <cstddef>
#include <cstdint>

#include "seqpar/kernels/matrix_state_params.h"

namespace seqpar::kernels::cuda {

enum class MatrixChunkStatus : int { kOk = 0, kUnsupported = 1, kCudaError = 2 };

struct MatrixChunkResult {
  MatrixChunkStatus status = MatrixChunkStatus::kOk;
  int cuda_error = 0;      // the cudaError_t, for kCudaError
  const char* reason = ""; // a static string saying why, for kUnsupported
  bool ok() const { return status == MatrixChunkStatus::kOk; }
};

// nullptr when the kernels take this problem on the current device, else why not (static).
const char* matrix_chunk_unsupported(MatrixRecurrence recurrence, ScalarKind dtype,
                                     const MatrixChunkShape& shape);

// Entries of the chunk table of a segmented shape (0 without segments), and the table itself.
size_t matrix_chunk_table_size(const MatrixChunkShape& shape);
void fill_matrix_chunk_table(const MatrixChunkShape& shape, int64_t* table);

size_t matrix_chunk_backward_workspace_size(const MatrixChunkBackwardParams& params);

MatrixChunkResult cuda_matrix_chunk_forward(const MatrixChunkForwardParams& params, void* stream);
MatrixChunkResult cuda_matrix_chunk_backward(const MatrixChunkBackwardParams& params, void* stream,
                                             void* workspace = nullptr, size_t workspace_bytes = 0);

}  // namespace seqpar::kernels::cuda
