// CUDA backend of the scan ops: validates (every tensor on a's device, named in the message),
// fills the kernel params with the same glue as the CPU backend, and launches kernels/cuda on
// the current stream of a's device under a device guard.
//
// The kernels' look-back scratch comes from PyTorch's caching allocator (a byte tensor on the
// current stream, freed when the op returns: stream-ordered reuse, counted in PyTorch's memory
// statistics, no cudaMalloc per call, works under CUDA graph capture with PyTorch's pools).
//
// Empty problems follow scan_cpu.cpp: the kernels are called whenever batch and channels are
// non-zero (T == 0 included: they then copy h0 -> h_last, grad_h_last -> grad_h0, or write the
// identity summary), and nothing runs when batch or channels is zero. The launch is checked
// synchronously (cudaGetLastError inside the kernels' entry points); errors of the kernel's
// execution surface at the next synchronizing call, as with any CUDA op.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/library.h>

#include "ops/determinism.h"
#include "ops/kernel_params.h"
#include "ops/packed_sequences.h"
#include "ops/scan_checks.h"
#include "seqpar/kernels/cuda_scan.h"

namespace seqpar::ops {
namespace {

void check_on_cuda(const char* op, const at::Tensor& a) {
  TORCH_CHECK(a.is_cuda(), op, ": argument 'a' is on ", a.device(),
              " but another argument is a CUDA tensor; expected every tensor on one CUDA device");
}

void check_optional_like(const char* op, const char* name, const std::optional<at::Tensor>& t,
                         const at::Tensor& a, bool state) {
  if (!t.has_value() || !t->defined()) return;
  if (state) {
    check_state_like(op, name, *t, "a", a);
  } else {
    check_like(op, name, *t, "a", a);
  }
}

void check_launch(const char* op, int err) {
  TORCH_CHECK(err == 0, op, ": CUDA kernel launch failed: ",
              cudaGetErrorString(static_cast<cudaError_t>(err)));
}

// c10::cuda::getCurrentCUDAStream is what at::cuda::getCurrentCUDAStream forwards to; the c10
// header is used because ATen/cuda/CUDAContext.h also needs the cuBLAS/cuSPARSE/cuSOLVER
// headers, which a CUDA toolkit without the math libraries lacks.
void* current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// Look-back scratch of `bytes` on a's device (undefined when no scratch is needed).
at::Tensor workspace(const at::Tensor& a, size_t bytes) {
  if (bytes == 0) return at::Tensor();
  return at::empty({static_cast<int64_t>(bytes)}, a.options().dtype(at::kByte));
}
void* data_or_null(const at::Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

// The one launch path of the three ops: the determinism flag (ops/determinism.h), nothing when
// batch or channels is zero, look-back scratch of the size the kernels ask for, the launch on
// the current stream and its status checked. `kernel` is the kernels' entry point for Params.
template <class Params, class WorkspaceSize, class Kernel>
void launch(const char* op, const at::Tensor& a, Params& params, WorkspaceSize workspace_size,
            Kernel kernel) {
  params.deterministic = deterministic_requested();
  if (params.shape.batch == 0 || params.shape.channels == 0) return;
  const size_t bytes = workspace_size(params);
  const at::Tensor scratch = workspace(a, bytes);
  check_launch(op, kernel(params, current_stream(), data_or_null(scratch), bytes));
}

std::tuple<at::Tensor, at::Tensor> scan_cuda(const at::Tensor& a, const at::Tensor& b,
                                             const std::optional<at::Tensor>& h0, bool reverse,
                                             const std::optional<at::Tensor>& cu_seqlens) {
  const char* op = "seqpar::scan";
  const auto cu = check_scan_cu_seqlens(op, cu_seqlens, a);
  check_scan_inputs(op, a, b, h0, cu);
  check_on_cuda(op, a);
  const c10::cuda::CUDAGuard guard(a.device());
  PreparedForward p =
      prepare_forward(a, b, h0, reverse, segment_bounds(cu, a.size(1), reverse, a.device()));
  launch(op, a, p.params, kernels::cuda::scan_forward_workspace_size,
         [](const auto& k, void* stream, void* ws, size_t n) {
           return kernels::cuda::scan_forward(k, stream, ws, n);
         });
  return {p.h, p.h_last};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> scan_backward_cuda(
    const at::Tensor& a, const at::Tensor& h, const std::optional<at::Tensor>& h0,
    const std::optional<at::Tensor>& grad_h, const std::optional<at::Tensor>& grad_h_last,
    bool reverse, const std::optional<at::Tensor>& cu_seqlens) {
  const char* op = "seqpar::scan_backward";
  TORCH_CHECK(a.defined(), op, ": argument 'a' is undefined");
  TORCH_CHECK(h.defined(), op, ": argument 'h' is undefined");
  check_like(op, "h", h, "a", a);
  const auto cu = check_scan_cu_seqlens(op, cu_seqlens, a);
  check_scan_inputs(op, a, h, h0, cu);
  check_optional_like(op, "grad_h", grad_h, a, false);
  if (grad_h_last.has_value() && grad_h_last->defined())
    check_state_like(op, "grad_h_last", *grad_h_last, "a", a, cu);
  check_on_cuda(op, a);
  const c10::cuda::CUDAGuard guard(a.device());
  PreparedBackward p = prepare_backward(a, h, h0, grad_h, grad_h_last, reverse,
                                        segment_bounds(cu, a.size(1), reverse, a.device()));
  launch(op, a, p.params, kernels::cuda::scan_backward_workspace_size,
         [](const auto& k, void* stream, void* ws, size_t n) {
           return kernels::cuda::scan_backward(k, stream, ws, n);
         });
  return {p.grad_a, p.grad_b, p.grad_h0};
}

std::tuple<at::Tensor, at::Tensor> scan_summary_cuda(const at::Tensor& a, const at::Tensor& b,
                                                     bool reverse) {
  const char* op = "seqpar::scan_summary";
  check_scan_inputs(op, a, b, std::nullopt);
  check_on_cuda(op, a);
  const c10::cuda::CUDAGuard guard(a.device());
  PreparedSummary p = prepare_summary(a, b, reverse);
  launch(op, a, p.params, kernels::cuda::scan_summary_workspace_size,
         [](const auto& k, void* stream, void* ws, size_t n) {
           return kernels::cuda::scan_summary(k, stream, ws, n);
         });
  return {p.A, p.B};
}

}  // namespace

TORCH_LIBRARY_IMPL(seqpar, CUDA, m) {
  m.impl("scan", &scan_cuda);
  m.impl("scan_backward", &scan_backward_cuda);
  m.impl("scan_summary", &scan_summary_cuda);
}

}  // namespace seqpar::ops
