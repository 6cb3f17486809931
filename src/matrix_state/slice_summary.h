// The summary of one slice of time for the sequence-parallel matrix-state ops (src/sp/): the
// affine map S -> M S + E that the slice applies to the state entering it (docs/design.md
// section 3), computed chunk by chunk without per-step matrices. Differentiable; in the
// compute dtype (float32, float64 for float64 inputs). An empty slice gives the identity.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace seqpar {

// GLA: (decay (B, H, K), E (B, H, K, V)), M = diag(decay) for every value column.
std::tuple<at::Tensor, at::Tensor> gla_slice_summary(const at::Tensor& k, const at::Tensor& v,
                                                     const at::Tensor& g, int64_t chunk_size);

// Gated DeltaNet: (M (B, H, K, K), E (B, H, K, V)).
std::tuple<at::Tensor, at::Tensor> gated_delta_rule_slice_summary(
    const at::Tensor& k, const at::Tensor& v, const at::Tensor& g, const at::Tensor& beta,
    int64_t chunk_size);

}  // namespace seqpar
