// The steps just before a slice of a sequence, for layers whose output at t reads inputs
// before t (a short causal convolution over the last c tokens reads c - 1 of them).
//
// x: (batch, time, channels), floating point. Returns (before, last), each (batch, width,
// channels) in x's dtype: `before` is the `width` steps before x's first step and `last` the
// `width` steps ending the sequence after x. Rows that fall before the start of the sequence
// come from `initial` (batch, width, channels), the tail of an earlier piece of the same
// sequence (zeros when absent), so that a sequence fed in pieces equals the whole.
// Differentiable in x and initial.
//
// seqpar::sp::previous_steps (seqpar/sp.h) is the same with the sequence split over ranks.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace seqpar {

std::tuple<at::Tensor, at::Tensor> previous_steps(const at::Tensor& x, int64_t width,
                                                  const std::optional<at::Tensor>& initial = std::nullopt);

}  // namespace seqpar
