// CUDA entry points of the scan kernels. Each launches on the given stream and returns without
// synchronizing; launch errors are reported through the returned cudaError_t-compatible int
// (0 = success) so that this header needs no CUDA include.
#pragma once

#include "seqpar/kernels/scan_params.h"

namespace seqpar::kernels::cuda {

// stream is a cudaStream_t passed as void* so that host code can include this header
// without the CUDA runtime headers.
int scan_forward(const ScanForwardParams& params, void* stream);
int scan_backward(const ScanBackwardParams& params, void* stream);
int scan_summary(const ScanSummaryParams& params, void* stream);

}  // namespace seqpar::kernels::cuda
