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
//
// Packed sequences (cu_seqlens, int64 [N + 1], batch 1; docs/packed_sequences.md): each
// sequence has its own windows. `initial`, `before` and `last` are then (N, width, channels),
// row n for sequence n, and no window of the convolution reaches across a sequence start: the
// outputs of a sequence's first W - 1 steps read its own `before` rows.
//
// causal_conv1d is the short causal convolution built on it (flash-linear-attention's
// ShortConvolution): depthwise over time, y[:, t, d] = act(bias[d] + sum_j weight[d, j] *
// [before, x][:, t + j, d]) for x (batch, time, dim), weight (dim, W) and `before` the W - 1
// steps before x (previous_steps' first result, or (batch, 0, dim) for W = 1); act is SiLU when
// `silu`. An empty x gives an empty y that still depends on `before` and the weight (conv1d
// refuses an empty output), so that a loss reaches previous_steps' collective backward on
// every rank. Differentiable in x, before, weight and bias.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace seqpar {

std::tuple<at::Tensor, at::Tensor> previous_steps(
    const at::Tensor& x, int64_t width, const std::optional<at::Tensor>& initial = std::nullopt,
    const std::optional<at::Tensor>& cu_seqlens = std::nullopt);

at::Tensor causal_conv1d(const at::Tensor& x, const at::Tensor& before, const at::Tensor& weight,
                         const std::optional<at::Tensor>& bias = std::nullopt, bool silu = false,
                         const std::optional<at::Tensor>& cu_seqlens = std::nullopt);

}  // namespace seqpar
