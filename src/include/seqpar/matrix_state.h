// seqpar's C++ API for recurrences with a matrix state per head (docs/design.md section 3):
//
//   gated linear attention (GLA)  S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T
//   gated DeltaNet                S_t = exp(g_t) (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T
//   output                        o_t = scale * S_t^T q_t
//
// with flash-linear-attention's layout and conventions, so code written for its chunk_gla and
// chunk_gated_delta_rule switches by changing the call:
//   q, k: (batch, time, heads, K); v: (batch, time, heads, V); g, the log of the decay:
//   (batch, time, heads, K) for GLA, (batch, time, heads) for gated DeltaNet; beta:
//   (batch, time, heads); initial_state and the returned final state: (batch, heads, K, V).
// q, k, v, g, beta share one dtype: float32, bfloat16 or float16 (computed in float32) or
// float64 (computed in float64, for checks). o has the inputs' dtype; the final state is
// float32 (float64 for float64 inputs). scale defaults to K^-0.5.
//
// Packed sequences (docs/packed_sequences.md): cu_seqlens, an int64 tensor [N + 1] (0 first,
// the packed length last, non-decreasing; batch 1), cuts time into N independent sequences:
// each starts from its row of initial_state (N, H, K, V), or zeros, and the final state has
// one row per sequence (N, H, K, V).
//
// Chunkwise form: the sequence is cut into chunks of chunk_size steps; inside a chunk the work
// is batched matrix products (and, for the delta rule, one unit-lower-triangular solve per
// chunk), across chunks a recurrence of chunk states. Written with ATen operations, so the same
// code runs on CPU and CUDA tensors, and differentiable through them (autograd).
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace seqpar {

// Returns (o, final_state).
std::tuple<at::Tensor, at::Tensor> chunk_gla(const at::Tensor& q, const at::Tensor& k,
                                             const at::Tensor& v, const at::Tensor& g,
                                             std::optional<double> scale = std::nullopt,
                                             const std::optional<at::Tensor>& initial_state = std::nullopt,
                                             int64_t chunk_size = 64,
                                             const std::optional<at::Tensor>& cu_seqlens = std::nullopt);

// Returns (o, final_state).
std::tuple<at::Tensor, at::Tensor> chunk_gated_delta_rule(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
    const at::Tensor& beta, std::optional<double> scale = std::nullopt,
    const std::optional<at::Tensor>& initial_state = std::nullopt, int64_t chunk_size = 64,
    const std::optional<at::Tensor>& cu_seqlens = std::nullopt);

// Kimi Delta Attention (flash-linear-attention's chunk_kda): the delta rule with a decay per
// key channel, S_t = (I - beta_t k_t k_t^T) diag(exp(g_t)) S_{t-1} + beta_t k_t v_t^T, g
// (batch, time, heads, K), the rest as for gated DeltaNet. chunk_size at most 16 or a multiple of
// 16. ATen composition (not yet a fused kernel). Returns (o, final_state).
std::tuple<at::Tensor, at::Tensor> chunk_kda(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
    const at::Tensor& beta, std::optional<double> scale = std::nullopt,
    const std::optional<at::Tensor>& initial_state = std::nullopt, int64_t chunk_size = 64,
    const std::optional<at::Tensor>& cu_seqlens = std::nullopt);

// Gated DeltaProduct (flash-linear-attention's chunk_gated_delta_product): num_householder = n
// generalized Householder factors per token,
//   S_t = (prod_{j = n-1 .. 0} (I - beta_tj k_tj k_tj^T)) exp(g_t) S_{t-1} + (the beta k v^T terms
//   of each factor, applied in order), o_t = scale * S_t^T q_t,
// i.e. per token: decay once, then n delta-rule steps, then the readout. q: (batch, time, heads,
// K); k: (batch, time * n, heads, K), v: (batch, time * n, heads, V), beta: (batch, time * n,
// heads), token t's factors at rows t n .. t n + n - 1; g (optional; no decay when absent):
// (batch, time, heads). The state, cu_seqlens (in tokens) and dtypes are as above; chunk_size
// counts sub-steps. Runs gated DeltaNet over the n T sub-steps (one kernel for both).
std::tuple<at::Tensor, at::Tensor> chunk_gated_delta_product(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const std::optional<at::Tensor>& g, const at::Tensor& beta, int64_t num_householder,
    std::optional<double> scale = std::nullopt,
    const std::optional<at::Tensor>& initial_state = std::nullopt, int64_t chunk_size = 64,
    const std::optional<at::Tensor>& cu_seqlens = std::nullopt);

}  // namespace seqpar
