// The summary of one slice of time for the sequence-parallel gated DeltaNet (src/sp/; GLA needs
// none: its output is linear in the entering state with a diagonal transition): the
// affine map S -> M S + E that the slice applies to the state entering it (docs/design.md
// section 3), computed chunk by chunk without per-step matrices. Differentiable; in the
// compute dtype (float32, float64 for float64 inputs). An empty slice gives the identity.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace seqpar {

// Gated DeltaNet: (M (B, H, K, K), E (B, H, K, V)).
std::tuple<at::Tensor, at::Tensor> gated_delta_rule_slice_summary(
    const at::Tensor& k, const at::Tensor& v, const at::Tensor& g, const at::Tensor& beta,
    int64_t chunk_size);

}  // namespace seqpar
