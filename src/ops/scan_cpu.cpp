// CPU backend of the scan ops: validates, fills the kernel params, runs kernels/cpu with
// LibTorch's intra-op thread count (at::get_num_threads()).
//
// In a build without CUDA it also registers a CUDA kernel whose only job is to say so by
// argument name, instead of the dispatcher's generic "could not run" message.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "ops/kernel_params.h"
#include "ops/determinism.h"
#include "ops/packed_sequences.h"
#include "ops/scan_checks.h"
#include "seqpar/kernels/cpu_scan.h"

namespace seqpar::ops {
namespace {

int cpu_threads() { return std::max(1, at::get_num_threads()); }

std::tuple<at::Tensor, at::Tensor> scan_cpu(const at::Tensor& a, const at::Tensor& b,
                                            const std::optional<at::Tensor>& h0, bool reverse,
                                            const std::optional<at::Tensor>& cu_seqlens) {
  const char* op = "seqpar::scan";
  const auto cu = check_scan_cu_seqlens(op, cu_seqlens, a);
  check_scan_inputs(op, a, b, h0, cu);
  PreparedForward p =
      prepare_forward(a, b, h0, reverse, segment_bounds(cu, a.size(1), reverse, at::kCPU));
  const auto& s = p.params.shape;
  if (s.batch > 0 && s.channels > 0) {
    p.params.num_threads = cpu_threads();
    p.params.deterministic = deterministic_requested();
    kernels::cpu::scan_forward(p.params);
  }
  return {p.h, p.h_last};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> scan_backward_cpu(
    const at::Tensor& a, const at::Tensor& h, const std::optional<at::Tensor>& h0,
    const std::optional<at::Tensor>& grad_h, const std::optional<at::Tensor>& grad_h_last,
    bool reverse, const std::optional<at::Tensor>& cu_seqlens) {
  const char* op = "seqpar::scan_backward";
  const auto cu = check_scan_cu_seqlens(op, cu_seqlens, a);
  check_scan_inputs(op, a, h, h0, cu);
  if (grad_h.has_value() && grad_h->defined()) check_like(op, "grad_h", *grad_h, "a", a);
  if (grad_h_last.has_value() && grad_h_last->defined())
    check_state_like(op, "grad_h_last", *grad_h_last, "a", a, cu);
  PreparedBackward p = prepare_backward(a, h, h0, grad_h, grad_h_last, reverse,
                                        segment_bounds(cu, a.size(1), reverse, at::kCPU));
  const auto& s = p.params.shape;
  if (s.batch > 0 && s.channels > 0) {
    p.params.num_threads = cpu_threads();
    p.params.deterministic = deterministic_requested();
    kernels::cpu::scan_backward(p.params);
  }
  return {p.grad_a, p.grad_b, p.grad_h0};
}

std::tuple<at::Tensor, at::Tensor> scan_summary_cpu(const at::Tensor& a, const at::Tensor& b,
                                                    bool reverse) {
  check_scan_inputs("seqpar::scan_summary", a, b, std::nullopt);
  PreparedSummary p = prepare_summary(a, b, reverse);
  const auto& s = p.params.shape;
  if (s.batch > 0 && s.channels > 0) {
    p.params.num_threads = cpu_threads();
    kernels::cpu::scan_summary(p.params);
  }
  return {p.A, p.B};
}

}  // namespace

TORCH_LIBRARY_IMPL(seqpar, CPU, m) {
  m.impl("scan", &scan_cpu);
  m.impl("scan_backward", &scan_backward_cpu);
  m.impl("scan_summary", &scan_summary_cpu);
}

#ifndef SEQPAR_WITH_CUDA
namespace {
[[noreturn]] void no_cuda(const char* op) {
  TORCH_CHECK(false, op, ": argument 'a' is a CUDA tensor, but this seqpar library was built ",
              "without CUDA support; expected a CPU tensor (or rebuild seqpar with ",
              "-DSEQPAR_WITH_CUDA=ON)");
}
std::tuple<at::Tensor, at::Tensor> scan_no_cuda(const at::Tensor&, const at::Tensor&,
                                                const std::optional<at::Tensor>&, bool,
                                                const std::optional<at::Tensor>&) {
  no_cuda("seqpar::scan");
}
std::tuple<at::Tensor, at::Tensor, at::Tensor> scan_backward_no_cuda(
    const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
    const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, bool,
    const std::optional<at::Tensor>&) {
  no_cuda("seqpar::scan_backward");
}
std::tuple<at::Tensor, at::Tensor> scan_summary_no_cuda(const at::Tensor&, const at::Tensor&,
                                                        bool) {
  no_cuda("seqpar::scan_summary");
}
}  // namespace

TORCH_LIBRARY_IMPL(seqpar, CUDA, m) {
  m.impl("scan", &scan_no_cuda);
  m.impl("scan_backward", &scan_backward_no_cuda);
  m.impl("scan_summary", &scan_summary_no_cuda);
}
#endif

}  // namespace seqpar::ops
