// seqpar::previous_steps on one rank (seqpar/previous_steps.h) and its op
// torch.ops.seqpar.previous_steps: the window before the slice is `initial` (or zeros), the
// last one the end of [initial, x].
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

namespace {

std::tuple<at::Tensor, at::Tensor> previous_steps_op(const at::Tensor& x, int64_t width,
                                                     const std::optional<at::Tensor>& initial) {
  return seqpar::previous_steps(x, width, initial);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(seqpar, m) {
  // The `width` steps before x and the `width` steps ending [initial, x] (seqpar/previous_steps.h).
  m.def("previous_steps(Tensor x, int width, Tensor? initial) -> (Tensor before, Tensor last)");
}

TORCH_LIBRARY_IMPL(seqpar, CompositeImplicitAutograd, m) {
  m.impl("previous_steps", &previous_steps_op);
}

}  // namespace seqpar
