// Entry points of the CUDA scan (cuda_scan.h): one switch from ScalarKind to the storage type,
// ending in a clear error for a kind the kernels do not know. Kernels launch on the caller's
// stream and nothing here synchronizes.
#include "seqpar/kernels/cuda_scan.h"

#include "scan_dispatch.h"
#include "seqpar/kernels/static_switch.h"

namespace seqpar::kernels::cuda {
namespace {

// Calls fn with a value of the storage type that matches `kind` (only its type is used).
template <class Fn>
int dispatch_storage(ScalarKind kind, Fn&& fn) {
  return scalar_kind_switch<StorageTypes<float, double, __nv_bfloat16, __half, float2>>(
      kind, fn, [] { return int(cudaErrorInvalidValue); });
}

}  // namespace

int scan_forward(const ScanForwardParams& params, void* stream, void* workspace, size_t workspace_bytes) {
  const detail::Workspace ws{workspace, workspace_bytes};
  return dispatch_storage(params.dtype, [&](auto tag) {
    return detail::launch_forward<decltype(tag)>(params, static_cast<cudaStream_t>(stream), ws);
  });
}

int scan_forward(const ScanForwardParams& params, void* stream) {
  return scan_forward(params, stream, nullptr, 0);
}

size_t scan_forward_workspace_size(const ScanForwardParams& params) {
  size_t bytes = 0;
  dispatch_storage(params.dtype, [&](auto tag) {
    bytes = detail::workspace_forward<decltype(tag)>(params);
    return 0;
  });
  return bytes;
}

int scan_backward(const ScanBackwardParams& params, void* stream, void* workspace, size_t workspace_bytes) {
  const detail::Workspace ws{workspace, workspace_bytes};
  return dispatch_storage(params.dtype, [&](auto tag) {
    return detail::launch_backward<decltype(tag)>(params, static_cast<cudaStream_t>(stream), ws);
  });
}

int scan_backward(const ScanBackwardParams& params, void* stream) {
  return scan_backward(params, stream, nullptr, 0);
}

size_t scan_backward_workspace_size(const ScanBackwardParams& params) {
  size_t bytes = 0;
  dispatch_storage(params.dtype, [&](auto tag) {
    bytes = detail::workspace_backward<decltype(tag)>(params);
    return 0;
  });
  return bytes;
}

int scan_summary(const ScanSummaryParams& params, void* stream, void* workspace, size_t workspace_bytes) {
  const detail::Workspace ws{workspace, workspace_bytes};
  return dispatch_storage(params.dtype, [&](auto tag) {
    return detail::launch_summary<decltype(tag)>(params, static_cast<cudaStream_t>(stream), ws);
  });
}

int scan_summary(const ScanSummaryParams& params, void* stream) {
  return scan_summary(params, stream, nullptr, 0);
}

size_t scan_summary_workspace_size(const ScanSummaryParams& params) {
  size_t bytes = 0;
  dispatch_storage(params.dtype, [&](auto tag) {
    bytes = detail::workspace_summary<decltype(tag)>(params);
    return 0;
  });
  return bytes;
}

}  // namespace seqpar::kernels::cuda
