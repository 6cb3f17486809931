// Declarations of the per-element-type launchers (defined in scan_launch.cuh, instantiated
// once per type in scan_<dtype>.cu) for the dtype switch in cuda_scan.cu.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "scan_args.h"
#include "seqpar/kernels/scan_params.h"

namespace seqpar::kernels::cuda::detail {

template <class S>
int launch_forward(const ScanForwardParams& p, cudaStream_t stream, Workspace ws);
template <class S>
int launch_backward(const ScanBackwardParams& p, cudaStream_t stream, Workspace ws);
template <class S>
int launch_summary(const ScanSummaryParams& p, cudaStream_t stream, Workspace ws);
template <class S>
size_t workspace_forward(const ScanForwardParams& p);
template <class S>
size_t workspace_backward(const ScanBackwardParams& p);
template <class S>
size_t workspace_summary(const ScanSummaryParams& p);

}  // namespace seqpar::kernels::cuda::detail
