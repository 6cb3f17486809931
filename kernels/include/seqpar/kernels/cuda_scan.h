// CUDA entry points of the scan kernels. Each launches on the given stream and returns without
// synchronizing; launch errors are reported through the returned cudaError_t-compatible int
// (0 = success) so that this header needs no CUDA include.
//
// Look-back scratch: the kernels need a small device buffer per call (about 1-3% of the bytes
// they move; the *_workspace_size functions say how much, 0 when nothing runs). Pass one of
// at least that size, 16-byte aligned, as `workspace` and it is used (it must stay valid until
// the work queued on `stream` has run, i.e. stream-ordered lifetime, like a tensor from
// PyTorch's caching allocator); pass nullptr, or call the overloads without it, and each call
// takes the buffer from cudaMallocAsync on `stream` and returns it with cudaFreeAsync.
#pragma once

#include <cstddef>

#include "seqpar/kernels/scan_params.h"

namespace seqpar::kernels::cuda {

// stream is a cudaStream_t passed as void* so that host code can include this header
// without the CUDA runtime headers.
int scan_forward(const ScanForwardParams& params, void* stream);
int scan_backward(const ScanBackwardParams& params, void* stream);
int scan_summary(const ScanSummaryParams& params, void* stream);

size_t scan_forward_workspace_size(const ScanForwardParams& params);
size_t scan_backward_workspace_size(const ScanBackwardParams& params);
size_t scan_summary_workspace_size(const ScanSummaryParams& params);

int scan_forward(const ScanForwardParams& params, void* stream, void* workspace,
                 size_t workspace_bytes);
int scan_backward(const ScanBackwardParams& params, void* stream, void* workspace,
                  size_t workspace_bytes);
int scan_summary(const ScanSummaryParams& params, void* stream, void* workspace,
                 size_t workspace_bytes);

}  // namespace seqpar::kernels::cuda
