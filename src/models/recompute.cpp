// See seqpar/models/recompute.h.
#include "seqpar/models/recompute.h"

#include <torch/custom_class.h>
#include <torch/torch.h>

namespace seqpar::models {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The call and the parameters it reads, kept for backward (saved_data holds IValues only).
struct RecomputeState : torch::CustomClassHolder {
  RecomputedCalls fn;
  std::vector<at::Tensor> params;
};
const auto kRecomputeRegistration = torch::class_<RecomputeState>("seqpar", "_Recompute");

bool differentiable(const at::Tensor& t) {
  return t.defined() && (t.is_floating_point() || t.is_complex());
}

class Recompute : public torch::autograd::Function<Recompute> {
 public:
  // params (state->params, passed again as a list so that autograd routes their gradients).
  static variable_list forward(AutogradContext* ctx, at::TensorList inputs, at::TensorList params,
                               c10::intrusive_ptr<RecomputeState> state) {
    // Grad mode is off here: fn builds no graph and keeps no activations.
    variable_list outs = state->fn(inputs.vec());
    ctx->save_for_backward(inputs.vec());
    ctx->saved_data["state"] = state;
    return outs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto state = ctx->saved_data["state"].toCustomClass<RecomputeState>();
    const std::vector<at::Tensor>& params = state->params;
    const variable_list saved = ctx->get_saved_variables();
    std::vector<at::Tensor> leaves, wrt;
    std::vector<int64_t> slot;  // wrt[j] is the result's slot[j]
    for (size_t i = 0; i < saved.size(); ++i) {
      at::Tensor x = saved[i].detach();  // defined: recompute() passes defined inputs only
      if (differentiable(x) && ctx->needs_input_grad(i)) {
        x.requires_grad_(true);
        wrt.push_back(x);
        slot.push_back(static_cast<int64_t>(i));
      }
      leaves.push_back(x);
    }
    for (size_t k = 0; k < params.size(); ++k) {
      if (params[k].requires_grad()) {
        wrt.push_back(params[k]);
        slot.push_back(static_cast<int64_t>(saved.size() + k));
      }
    }
    variable_list result(saved.size() + params.size() + 1);  // + the state argument
    if (wrt.empty()) return result;
    torch::AutoGradMode grad(true);
    const variable_list outs = state->fn(leaves);
    variable_list with_grad, grad_of;  // the outputs that receive a gradient
    for (size_t i = 0; i < outs.size() && i < grads.size(); ++i)
      if (grads[i].defined() && outs[i].defined() && outs[i].requires_grad()) {
        with_grad.push_back(outs[i]);
        grad_of.push_back(grads[i]);
      }
    if (with_grad.empty()) return result;
    const variable_list g = torch::autograd::grad(with_grad, wrt, grad_of, /*retain_graph=*/false,
                                                  /*create_graph=*/false, /*allow_unused=*/true);
    for (size_t j = 0; j < wrt.size(); ++j) result[slot[j]] = g[j];
    return result;
  }
};

}  // namespace

std::vector<at::Tensor> recompute(const RecomputedCalls& fn, const std::vector<at::Tensor>& inputs,
                                  const std::vector<at::Tensor>& params, bool enabled) {
  bool tracked = false;
  if (enabled && at::GradMode::is_enabled()) {
    for (const auto& t : inputs) tracked = tracked || (t.defined() && t.requires_grad());
    for (const auto& t : params) tracked = tracked || t.requires_grad();
  }
  if (!tracked) return fn(inputs);
  // autograd::Function takes no undefined input: pass the defined ones, and let the call see
  // the undefined ones in their places again.
  std::vector<at::Tensor> defined;
  std::vector<size_t> where;
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].defined()) {
      defined.push_back(inputs[i]);
      where.push_back(i);
    }
  auto state = c10::make_intrusive<RecomputeState>();
  state->fn = [fn, where, n = inputs.size()](const std::vector<at::Tensor>& d) {
    std::vector<at::Tensor> all(n);
    for (size_t j = 0; j < where.size(); ++j) all[where[j]] = d[j];
    return fn(all);
  };
  state->params = params;
  return Recompute::apply(at::TensorList(defined), at::TensorList(state->params), state);
}

at::Tensor recompute(const RecomputedCall& fn, const std::vector<at::Tensor>& inputs,
                     const std::vector<at::Tensor>& params, bool enabled) {
  const RecomputedCalls one = [fn](const std::vector<at::Tensor>& v) {
    return std::vector<at::Tensor>{fn(v)};
  };
  return recompute(one, inputs, params, enabled)[0];
}

}  // namespace seqpar::models
