// Autograd for seqpar::block_scan: one fused backward pass (seqpar::block_scan_backward) that
// saves A, h and h0 (h is the returned output, so nothing is copied).
#include <torch/autograd.h>
#include <torch/library.h>

#include "ops/determinism.h"
#include "ops/op_handles.h"

namespace seqpar::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class BlockScanFunction : public torch::autograd::Function<BlockScanFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& A, const at::Tensor& b,
                               const std::optional<at::Tensor>& h0, bool reverse,
                               bool lower_triangular) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [h, h_last] = block_scan_op().call(A, b, h0, reverse, lower_triangular);
    const at::Tensor h0_t = h0.has_value() ? *h0 : at::Tensor();
    ctx->saved_data["reverse"] = reverse;
    ctx->saved_data["lower_triangular"] = lower_triangular;
    ctx->saved_data["deterministic"] = deterministic_requested();
    ctx->save_for_backward({A, h, h0_t});
    return {h, h_last};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const DeterministicScope deterministic(ctx->saved_data["deterministic"].toBool());
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& h0 = saved[2];
    auto [grad_A, grad_b, grad_h0] = block_scan_backward_op().call(
        saved[0], saved[1], defined_or_null(h0), defined_or_null(grads[0]),
        defined_or_null(grads[1]), ctx->saved_data["reverse"].toBool(),
        ctx->saved_data["lower_triangular"].toBool());
    return {grad_A, grad_b, h0.defined() ? grad_h0 : at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> block_scan_autograd(const at::Tensor& A, const at::Tensor& b,
                                                       const std::optional<at::Tensor>& h0,
                                                       bool reverse, bool lower_triangular) {
  auto out = BlockScanFunction::apply(A, b, h0, reverse, lower_triangular);
  return {out[0], out[1]};
}

}  // namespace

TORCH_LIBRARY_IMPL(seqpar, Autograd, m) { m.impl("block_scan", &block_scan_autograd); }

}  // namespace seqpar::ops
