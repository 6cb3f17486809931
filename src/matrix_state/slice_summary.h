// One slice of time for the sequence-parallel gated DeltaNet (src/sp/; GLA needs none of this:
// its output is linear in the entering state with a diagonal transition). The slice's local
// work is done once, before the exchange: the affine map S -> M S + E that the slice applies
// to the state entering it (docs/design.md section 3), computed chunk by chunk without
// per-step matrices, and, for every chunk, the map from the slice's entering state to the
// chunk's (prefix products P_n and zero-state states Z_n). After the exchange, `finish` turns
// the entering state x into the outputs with batched products only: S_n = P_n x + Z_n.
// Differentiable; in the compute dtype (float32, float64 for float64 inputs). An empty slice
// gives the identity.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <optional>
#include <tuple>

namespace seqpar {

struct GatedDeltaSlice {
  at::Tensor M, E;  // (B, H, K, K), (B, H, K, V)
  // x (B, H, K, V), the state entering the slice -> (o (B, T, H, V), final state (B, H, K, V)).
  std::function<std::tuple<at::Tensor, at::Tensor>(const at::Tensor& x)> finish;
};

GatedDeltaSlice gated_delta_rule_slice(const at::Tensor& q, const at::Tensor& k,
                                       const at::Tensor& v, const at::Tensor& g,
                                       const at::Tensor& beta, std::optional<double> scale,
                                       int64_t chunk_size);

}  // namespace seqpar
