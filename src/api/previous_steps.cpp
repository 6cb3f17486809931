// seqpar::previous_steps on one rank and seqpar::causal_conv1d (seqpar/previous_steps.h), and
// their ops torch.ops.seqpar.previous_steps / causal_conv1d: the window before the slice is
// `initial` (or zeros), the last one the end of [initial, x].
#include "seqpar/previous_steps.h"

#include <c10/util/Exception.h>
#include <torch/library.h>

namespace seqpar {

std::tuple<at::Tensor, at::Tensor> previous_steps(const at::Tensor& x, int64_t width,
                                                  const std::optional<at::Tensor>& initial) {
  TORCH_CHECK(x.dim() == 3, "seqpar.previous_steps: 'x' must be (batch, time, channels), got ",
              x.sizes());
  TORCH_CHECK(at::isFloatingType(x.scalar_type()),
              "seqpar.previous_steps: 'x' must be floating point, got ", x.scalar_type());
  TORCH_CHECK(width >= 1, "seqpar.previous_steps: 'width' must be >= 1, got ", width);
  at::Tensor before;
  if (initial && initial->defined()) {
    TORCH_CHECK(initial->dim() == 3 && initial->size(0) == x.size(0) &&
                    initial->size(1) == width && initial->size(2) == x.size(2),
                "seqpar.previous_steps: 'initial' must be (batch, width, channels) = (", x.size(0),
                ", ", width, ", ", x.size(2), "), got ", initial->sizes());
    TORCH_CHECK(initial->scalar_type() == x.scalar_type() && initial->device() == x.device(),
                "seqpar.previous_steps: 'initial' must have x's dtype and device (",
                x.scalar_type(), ", ", x.device(), "), got ", initial->scalar_type(), ", ",
                initial->device());
    before = *initial;
  } else {
    before = at::zeros({x.size(0), width, x.size(2)}, x.options());
  }
  at::Tensor last = at::cat({before, x}, 1).narrow(1, x.size(1), width);
  return {before, last};
}

at::Tensor causal_conv1d(const at::Tensor& x, const at::Tensor& before, const at::Tensor& weight,
                         const std::optional<at::Tensor>& bias, bool silu) {
  TORCH_CHECK(x.dim() == 3, "seqpar.causal_conv1d: 'x' must be (batch, time, dim), got ",
              x.sizes());
  const int64_t B = x.size(0), T = x.size(1), D = x.size(2);
  TORCH_CHECK(weight.dim() == 2 && weight.size(0) == D && weight.size(1) >= 1,
              "seqpar.causal_conv1d: 'weight' must be (dim, width) with dim = ", D, ", got ",
              weight.sizes());
  const int64_t W = weight.size(1);
  TORCH_CHECK(before.dim() == 3 && before.size(0) == B && before.size(1) == W - 1 &&
                  before.size(2) == D,
              "seqpar.causal_conv1d: 'before' must be (batch, width - 1, dim) = (", B, ", ",
              W - 1, ", ", D, "), got ", before.sizes());
  at::Tensor window = at::cat({before, x}, 1);
  // conv1d refuses an empty output: an empty x convolves one zero step and keeps none of it.
  if (T == 0) window = at::cat({window, at::zeros({B, 1, D}, x.options())}, 1);
  const int64_t one = 1, zero = 0;
  at::Tensor y = at::conv1d(window.transpose(1, 2), weight.unsqueeze(1), bias,
                            at::IntArrayRef(one), at::IntArrayRef(zero), at::IntArrayRef(one), D)
                     .narrow(2, 0, T)
                     .transpose(1, 2);
  return silu ? at::silu(y) : y;
}

namespace {

std::tuple<at::Tensor, at::Tensor> previous_steps_op(const at::Tensor& x, int64_t width,
                                                     const std::optional<at::Tensor>& initial) {
  return seqpar::previous_steps(x, width, initial);
}

}  // namespace

TORCH_LIBRARY_IMPL(seqpar, CompositeImplicitAutograd, m) {
  m.impl("previous_steps", &previous_steps_op);
  m.impl("causal_conv1d", [](const at::Tensor& x, const at::Tensor& before,
                             const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                             bool silu) { return seqpar::causal_conv1d(x, before, weight, bias, silu); });
}

}  // namespace seqpar
