// Activation recomputation ("checkpointing") of one differentiable call: the forward keeps only
// the call's inputs, not the activations inside it; the backward runs the call again with
// autograd on and takes its vector-Jacobian product. Trades one extra forward of the call for
// its activations' memory; the prefix-scannable layers use it for every Agg and Inf call
// (docs/psm.md, "Memory"), the matrix-state layers for the recurrence over slices of the
// sequence (docs/matrix_state.md), whose activations otherwise grow with the sequence.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <vector>

namespace seqpar::models {

using RecomputedCall = std::function<at::Tensor(const std::vector<at::Tensor>& inputs)>;
using RecomputedCalls =
    std::function<std::vector<at::Tensor>(const std::vector<at::Tensor>& inputs)>;

// fn(inputs), differentiable in `inputs` and in `params` (the parameters fn reads: their
// gradients accumulate as usual). fn must be deterministic (no dropout) and must not modify its
// inputs. With enabled = false, or outside autograd (no input or parameter requires grad, or
// grad mode off), it is plainly fn(inputs).
at::Tensor recompute(const RecomputedCall& fn, const std::vector<at::Tensor>& inputs,
                     const std::vector<at::Tensor>& params, bool enabled = true);
// The same for a call with several outputs (each differentiable; an output whose gradient is
// not needed costs nothing extra). An undefined input is passed on as undefined.
std::vector<at::Tensor> recompute(const RecomputedCalls& fn, const std::vector<at::Tensor>& inputs,
                                  const std::vector<at::Tensor>& params, bool enabled = true);

}  // namespace seqpar::models
