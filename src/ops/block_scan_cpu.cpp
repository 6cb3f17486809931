// CPU backend of the 2x2 block scan ops (block_scan_params.h): checks, kernel params, the
// engine's kernels with LibTorch's intra-op thread count.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "ops/block_scan_prepare.h"
#include "ops/determinism.h"
#include "seqpar/kernels/cpu_block_scan.h"

namespace seqpar::ops {
namespace {

int cpu_threads() { return std::max(1, at::get_num_threads()); }
bool has_work(const kernels::ScanShape& s) { return s.batch > 0 && s.channels > 0; }

std::tuple<at::Tensor, at::Tensor> block_scan_cpu(const at::Tensor& A, const at::Tensor& b,
                                                  const std::optional<at::Tensor>& h0,
                                                  bool reverse, bool lower_triangular) {
  check_block_inputs("seqpar::block_scan", A, b, "b", h0);
  PreparedBlockForward p = prepare_block_forward(A, b, h0, reverse, lower_triangular);
  if (has_work(p.params.shape)) {
    p.params.num_threads = cpu_threads();
    p.params.deterministic = deterministic_requested();
    kernels::cpu::block_scan_forward(p.params);
  }
  return {p.h, p.h_last};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> block_scan_backward_cpu(
    const at::Tensor& A, const at::Tensor& h, const std::optional<at::Tensor>& h0,
    const std::optional<at::Tensor>& grad_h, const std::optional<at::Tensor>& grad_h_last,
    bool reverse, bool lower_triangular) {
  const char* op = "seqpar::block_scan_backward";
  check_block_inputs(op, A, h, "h", h0);
  if (grad_h.has_value() && grad_h->defined())
    check_block_inputs(op, A, *grad_h, "grad_h", std::nullopt);
  if (grad_h_last.has_value() && grad_h_last->defined())
    check_block_inputs(op, A, h, "h", grad_h_last);
  PreparedBlockBackward p =
      prepare_block_backward(A, h, h0, grad_h, grad_h_last, reverse, lower_triangular);
  if (has_work(p.params.shape)) {
    p.params.num_threads = cpu_threads();
    p.params.deterministic = deterministic_requested();
    kernels::cpu::block_scan_backward(p.params);
  }
  return {p.grad_A, p.grad_b, p.grad_h0};
}

std::tuple<at::Tensor, at::Tensor> block_scan_summary_cpu(const at::Tensor& A,
                                                          const at::Tensor& b, bool reverse,
                                                          bool lower_triangular) {
  check_block_inputs("seqpar::block_scan_summary", A, b, "b", std::nullopt);
  PreparedBlockSummary p = prepare_block_summary(A, b, reverse, lower_triangular);
  if (has_work(p.params.shape)) {
    p.params.num_threads = cpu_threads();
    kernels::cpu::block_scan_summary(p.params);
  }
  return {p.M, p.E};
}

}  // namespace

TORCH_LIBRARY_IMPL(seqpar, CPU, m) {
  m.impl("block_scan", &block_scan_cpu);
  m.impl("block_scan_backward", &block_scan_backward_cpu);
  m.impl("block_scan_summary", &block_scan_summary_cpu);
}

#ifndef SEQPAR_WITH_CUDA
// A build without CUDA says so by argument name, not with the dispatcher's "could not run".
namespace {
[[noreturn]] void no_cuda(const char* op) {
  TORCH_CHECK(false, op, ": argument 'A' is a CUDA tensor, but this seqpar library was built ",
              "without CUDA support; expected a CPU tensor (or rebuild seqpar with ",
              "-DSEQPAR_WITH_CUDA=ON)");
}
std::tuple<at::Tensor, at::Tensor> block_scan_no_cuda(const at::Tensor&, const at::Tensor&,
                                                      const std::optional<at::Tensor>&, bool,
                                                      bool) {
  no_cuda("seqpar::block_scan");
}
std::tuple<at::Tensor, at::Tensor, at::Tensor> block_scan_backward_no_cuda(
    const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
    const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, bool, bool) {
  no_cuda("seqpar::block_scan_backward");
}
std::tuple<at::Tensor, at::Tensor> block_scan_summary_no_cuda(const at::Tensor&,
                                                              const at::Tensor&, bool, bool) {
  no_cuda("seqpar::block_scan_summary");
}
}  // namespace

TORCH_LIBRARY_IMPL(seqpar, CUDA, m) {
  m.impl("block_scan", &block_scan_no_cuda);
  m.impl("block_scan_backward", &block_scan_backward_no_cuda);
  m.impl("block_scan_summary", &block_scan_summary_no_cuda);
}
#endif

}  // namespace seqpar::ops
