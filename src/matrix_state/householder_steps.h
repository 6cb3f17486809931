// Gated DeltaProduct (DeltaProduct: several generalized Householder factors per token) as gated
// DeltaNet over num_householder sub-steps per token, the way flash-linear-attention's
// chunk_gated_delta_product runs it. Token t's state update
//   S = exp(g_t) S;  for j < n: S = (I - beta_tj k_tj k_tj^T) S + beta_tj k_tj v_tj^T;
//   o_t = scale * S^T q_t
// is n steps of the gated delta rule: the decay on the first (log-decay g_t there, 0 on the
// others; exp(g) is a scalar, so it commutes with the first factor) and the readout on the last
// (q_t there, zeros elsewhere, whose outputs are dropped). So the one-device and the
// sequence-parallel op each build these sub-step inputs and call their gated DeltaNet: one
// kernel, one cross-rank scan, autograd through the interleaving; packed sequences' bounds
// scale by n. k, v and beta already come with n sub-steps per token (FLA's layout: token t's
// factors at rows t n .. t n + n - 1).
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace seqpar::matrix_state {

struct HouseholderSteps {
  at::Tensor q, g;                       // (B, T n, H, K), (B, T n, HV)
  std::optional<at::Tensor> cu_seqlens;  // the sub-steps' bounds: cu_seqlens * n
};

// Checks the DeltaProduct arguments of `op` (errors name them) and builds the sub-step q and g.
// g may be undefined (no decay). q: (B, T, H, K); k: (B, T n, H, K); v: (B, T n, HV, V);
// beta: (B, T n, HV); g: (B, T, HV).
HouseholderSteps householder_steps(const char* op, const at::Tensor& q, const at::Tensor& k,
                                   const at::Tensor& v, const at::Tensor& g, const at::Tensor& beta,
                                   int64_t num_householder,
                                   const std::optional<at::Tensor>& cu_seqlens);

// The tokens' outputs (B, T, HV, V) from the sub-steps' (B, T n, HV, V): every n-th, the last
// of each token's sub-steps.
at::Tensor token_outputs(const at::Tensor& sub_step_outputs, int64_t num_householder);

}  // namespace seqpar::matrix_state
