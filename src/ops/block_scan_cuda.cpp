// CUDA backend of the 2x2 block scan ops: the same checks and kernel params as the CPU backend
// (block_scan_prepare.h), every tensor on A's device, the kernels (kernels/cuda/block_scan.cu)
// on the current stream under a device guard.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/library.h>

#include "ops/block_scan_prepare.h"
#include "seqpar/kernels/cuda_block_scan.h"

namespace seqpar::ops {
namespace {

void check_on_cuda(const char* op, const at::Tensor& A) {
  TORCH_CHECK(A.is_cuda(), op, ": argument 'A' is on ", A.device(),
              " but another argument is a CUDA tensor; expected every tensor on one CUDA device");
}
void check_launch(const char* op, int err) {
  TORCH_CHECK(err == 0, op, ": CUDA kernel launch failed: ",
              cudaGetErrorString(static_cast<cudaError_t>(err)));
}
void* current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }
bool has_work(const kernels::ScanShape& s) { return s.batch > 0 && s.channels > 0; }

std::tuple<at::Tensor, at::Tensor> block_scan_cuda(const at::Tensor& A, const at::Tensor& b,
                                                   const std::optional<at::Tensor>& h0,
                                                   bool reverse, bool lower_triangular) {
  const char* op = "seqpar::block_scan";
  check_on_cuda(op, A);
  check_block_inputs(op, A, b, "b", h0);
  const c10::cuda::CUDAGuard guard(A.device());
  PreparedBlockForward p = prepare_block_forward(A, b, h0, reverse, lower_triangular);
  if (has_work(p.params.shape))
    check_launch(op, kernels::cuda::block_scan_forward(p.params, current_stream()));
  return {p.h, p.h_last};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> block_scan_backward_cuda(
    const at::Tensor& A, const at::Tensor& h, const std::optional<at::Tensor>& h0,
    const std::optional<at::Tensor>& grad_h, const std::optional<at::Tensor>& grad_h_last,
    bool reverse, bool lower_triangular) {
  const char* op = "seqpar::block_scan_backward";
  check_on_cuda(op, A);
  check_block_inputs(op, A, h, "h", h0);
  if (grad_h.has_value() && grad_h->defined())
    check_block_inputs(op, A, *grad_h, "grad_h", std::nullopt);
  if (grad_h_last.has_value() && grad_h_last->defined())
    check_block_inputs(op, A, h, "h", grad_h_last);
  const c10::cuda::CUDAGuard guard(A.device());
  PreparedBlockBackward p =
      prepare_block_backward(A, h, h0, grad_h, grad_h_last, reverse, lower_triangular);
  if (has_work(p.params.shape))
    check_launch(op, kernels::cuda::block_scan_backward(p.params, current_stream()));
  return {p.grad_A, p.grad_b, p.grad_h0};
}

std::tuple<at::Tensor, at::Tensor> block_scan_summary_cuda(const at::Tensor& A,
                                                           const at::Tensor& b, bool reverse,
                                                           bool lower_triangular) {
  const char* op = "seqpar::block_scan_summary";
  check_on_cuda(op, A);
  check_block_inputs(op, A, b, "b", std::nullopt);
  const c10::cuda::CUDAGuard guard(A.device());
  PreparedBlockSummary p = prepare_block_summary(A, b, reverse, lower_triangular);
  if (has_work(p.params.shape))
    check_launch(op, kernels::cuda::block_scan_summary(p.params, current_stream()));
  return {p.M, p.E};
}

}  // namespace

TORCH_LIBRARY_IMPL(seqpar, CUDA, m) {
  m.impl("block_scan", &block_scan_cuda);
  m.impl("block_scan_backward", &block_scan_backward_cuda);
  m.impl("block_scan_summary", &block_scan_summary_cuda);
}

}  // namespace seqpar::ops
