// seqpar::previous_steps on one rank and seqpar::causal_conv1d (seqpar/previous_steps.h), and
// their ops torch.ops.seqpar.previous_steps / causal_conv1d: the window before the slice is
// `initial` (or zeros), the last one the end of [initial, x]. With packed sequences every
// sequence has its own windows (packed_windows below): gathers of at most N * width rows, so a
// packed run costs the dense convolution plus O(N * width) work.
#include "seqpar/previous_steps.h"

#include <c10/util/Exception.h>
#include <torch/library.h>

#include "ops/packed_sequences.h"

namespace seqpar {
namespace {

// Per sequence n of cu (host int64 [N + 1]) and j < width: the step c_n + offset + j when it
// lies in [c_n, c_{n+1}) (`inside`), as an index into time (clamped into range when outside).
struct SequenceRows {
  at::Tensor index, inside;  // (N, width) int64 and bool
};
SequenceRows sequence_rows(const at::Tensor& cu, int64_t width, bool from_end, int64_t T,
                           const at::TensorOptions& device) {
  const at::Tensor c = cu.to(device.device());
  const at::Tensor start = c.narrow(0, 0, c.size(0) - 1).unsqueeze(1);
  const at::Tensor end = c.narrow(0, 1, c.size(0) - 1).unsqueeze(1);
  const at::Tensor j = at::arange(width, c.options()).unsqueeze(0);
  // from the start: c_n + j; from the end: c_{n+1} - width + j.
  const at::Tensor step = from_end ? end - width + j : start + j;
  const at::Tensor inside = (step >= start) & (step < end);
  return {step.clamp(0, std::max<int64_t>(T - 1, 0)), inside};
}

// x[0, rows] where inside, else zeros: (N, width, channels).
at::Tensor gather_steps(const at::Tensor& x, const SequenceRows& r) {
  if (x.size(1) == 0) return at::zeros({r.index.size(0), r.index.size(1), x.size(2)}, x.options());
  const at::Tensor g = x.select(0, 0).index_select(0, r.index.flatten())
                           .view({r.index.size(0), r.index.size(1), x.size(2)});
  return at::where(r.inside.unsqueeze(-1), g, at::zeros({}, x.options()));
}

void check_x(const at::Tensor& x, const char* op) {
  TORCH_CHECK(x.dim() == 3, op, ": 'x' must be (batch, time, channels), got ", x.sizes());
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), op, ": 'x' must be floating point, got ",
              x.scalar_type());
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> previous_steps(const at::Tensor& x, int64_t width,
                                                  const std::optional<at::Tensor>& initial,
                                                  const std::optional<at::Tensor>& cu_seqlens) {
  constexpr const char* op = "seqpar.previous_steps";
  check_x(x, op);
  TORCH_CHECK(width >= 1, op, ": 'width' must be >= 1, got ", width);
  const auto cu = ops::check_cu_seqlens(op, cu_seqlens, x.size(0), x.size(1));
  const int64_t rows = cu ? cu->size(0) - 1 : x.size(0);
  at::Tensor before;
  if (initial && initial->defined()) {
    TORCH_CHECK(initial->dim() == 3 && initial->size(0) == rows && initial->size(1) == width &&
                    initial->size(2) == x.size(2),
                op, ": 'initial' must be (", cu ? "sequences of 'cu_seqlens'" : "batch",
                ", width, channels) = (", rows, ", ", width, ", ", x.size(2), "), got ",
                initial->sizes());
    TORCH_CHECK(initial->scalar_type() == x.scalar_type() && initial->device() == x.device(), op,
                ": 'initial' must have x's dtype and device (", x.scalar_type(), ", ", x.device(),
                "), got ", initial->scalar_type(), ", ", initial->device());
    before = *initial;
  } else {
    before = at::zeros({rows, width, x.size(2)}, x.options());
  }
  if (!cu) return {before, at::cat({before, x}, 1).narrow(1, x.size(1), width)};
  // last_n[j] = [before_n, x_n][len_n + j]: x's step c_{n+1} - width + j when it lies in the
  // sequence, else before_n[len_n + j].
  const SequenceRows from_x = sequence_rows(*cu, width, /*from_end=*/true, x.size(1), x.options());
  const at::Tensor lengths = (cu->narrow(0, 1, rows) - cu->narrow(0, 0, rows)).to(x.device());
  const at::Tensor b_index =
      (lengths.unsqueeze(1) + at::arange(width, lengths.options()).unsqueeze(0)).clamp_max(width - 1);
  const at::Tensor from_before = before.gather(1, b_index.unsqueeze(-1).expand({rows, width, x.size(2)}));
  const at::Tensor last = at::where(from_x.inside.unsqueeze(-1), gather_steps(x, from_x), from_before);
  return {before, last};
}

at::Tensor causal_conv1d(const at::Tensor& x, const at::Tensor& before, const at::Tensor& weight,
                         const std::optional<at::Tensor>& bias, bool silu,
                         const std::optional<at::Tensor>& cu_seqlens) {
  constexpr const char* op = "seqpar.causal_conv1d";
  TORCH_CHECK(x.dim() == 3, op, ": 'x' must be (batch, time, dim), got ", x.sizes());
  const int64_t B = x.size(0), T = x.size(1), D = x.size(2);
  TORCH_CHECK(weight.dim() == 2 && weight.size(0) == D && weight.size(1) >= 1, op,
              ": 'weight' must be (dim, width) with dim = ", D, ", got ", weight.sizes());
  const int64_t W = weight.size(1);
  const auto cu = ops::check_cu_seqlens(op, cu_seqlens, B, T);
  const int64_t rows = cu ? cu->size(0) - 1 : B;
  TORCH_CHECK(before.dim() == 3 && before.size(0) == rows && before.size(1) == W - 1 &&
                  before.size(2) == D,
              op, ": 'before' must be (", cu ? "sequences of 'cu_seqlens'" : "batch",
              ", width - 1, dim) = (", rows, ", ", W - 1, ", ", D, "), got ", before.sizes());
  // The W taps as shifted multiply-adds over (rows, steps, D): W passes over memory, where
  // at::conv1d's depthwise CPU path took seconds at T = 2^14, D = 1024 (benchmarks/
  // packed_bench.py). An empty output still depends on the window, the weight and the bias.
  // 16-bit inputs are summed in float32 and rounded once, as conv1d does.
  const bool half = x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf;
  const auto conv = [&](const at::Tensor& window_in, int64_t steps) {
    const at::Tensor window = half ? window_in.to(at::kFloat) : window_in;
    const at::Tensor w = half ? weight.to(at::kFloat) : weight;
    at::Tensor y = window.narrow(1, 0, steps) * w.select(1, 0);
    for (int64_t j = 1; j < W; ++j) y = y + window.narrow(1, j, steps) * w.select(1, j);
    if (bias && bias->defined()) y = y + (half ? bias->to(at::kFloat) : *bias);
    if (steps == 0) y = y + window.narrow(1, 0, 0).sum();
    return half ? y.to(x.scalar_type()) : y;
  };
  at::Tensor y;
  if (!cu) {
    y = conv(at::cat({before, x}, 1), T);
  } else {
    // The dense convolution with zeros before the pack, then the first W - 1 outputs of every
    // sequence corrected in place to the convolution of its own window [before_n, its first
    // W - 1 steps] (an index_add of the differences; rows outside their sequence add exact
    // zeros): O(N W D) beyond the dense op, and no shape depends on cu_seqlens' values, so it
    // traces (fake tensors, torch.compile).
    y = conv(at::cat({at::zeros({1, W - 1, D}, x.options()), x}, 1), T);
    if (W == 1 || rows == 0 || T == 0) {
      // No window reads `before`; y still depends on it (an add of no rows), so that a loss
      // reaches sequence parallelism's collective backward behind `before` on every rank.
      y.index_add_(1, at::zeros({0}, x.options().dtype(at::kLong)),
                   before.reshape({1, -1, D}).narrow(1, 0, 0).to(y.scalar_type()));
    } else {
      const SequenceRows head = sequence_rows(*cu, W - 1, /*from_end=*/false, T, x.options());
      const at::Tensor inside = head.inside.flatten().unsqueeze(-1);  // (N (W - 1), 1)
      const at::Tensor index = head.index.flatten();
      const at::Tensor own = conv(at::cat({before, gather_steps(x, head)}, 1), W - 1).flatten(0, 1);
      const at::Tensor rows_y = y.select(0, 0);
      const at::Tensor change =
          at::where(inside, own - rows_y.index_select(0, index), at::zeros({}, y.options()));
      y.index_add_(1, index, change.unsqueeze(0));  // on y itself: no copy in backward
    }
  }
  return silu ? at::silu(y) : y;
}

TORCH_LIBRARY_IMPL(seqpar, CompositeImplicitAutograd, m) {
  m.impl("previous_steps",
         [](const at::Tensor& x, int64_t width, const std::optional<at::Tensor>& initial,
            const std::optional<at::Tensor>& cu_seqlens) {
           return seqpar::previous_steps(x, width, initial, cu_seqlens);
         });
  m.impl("causal_conv1d", [](const at::Tensor& x, const at::Tensor& before,
                             const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                             bool silu, const std::optional<at::Tensor>& cu_seqlens) {
    return seqpar::causal_conv1d(x, before, weight, bias, silu, cu_seqlens);
  });
}

}  // namespace seqpar
