// Declarations of the per-element-type launchers (defined in scan_launch.cuh, instantiated
// once per type in scan_<dtype>.cu) for the dtype switch in cuda_scan.cu.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "seqpar/kernels/scan_params.h"

namespace seqpar::kernels::cuda::detail {

template <class S>
int launch_forward(const ScanForwardParams& p, cudaStream_t stream);
template <class S>
int launch_backward(const ScanBackwardParams& p, cudaStream_t stream);
template <class S>
int launch_summary(const ScanSummaryParams& p, cudaStream_t stream);

}  // namespace seqpar::kernels::cuda::detail
