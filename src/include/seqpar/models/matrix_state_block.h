// MatrixStateBlock: a gated linear attention (GLA) or gated DeltaNet layer as a torch::nn
// module, for the byte LM next to ManifoldScan (docs/matrix_state.md, docs/training.md).
//
// For an input x (batch, time, d_model), F = rmsnorm(x), per head (K = V = d_model / heads):
//   q = W_q F, k = W_k F, v = W_v F;
//   GLA:            g = logsigmoid(W_g F) / 16 per key channel (decays start near 1, as in
//                   flash-linear-attention's GLA layer);
//   gated DeltaNet: k = k / |k|, g = logsigmoid(W_g F) per head (its bias starts at 4),
//                   beta = sigmoid(W_beta F) per head;
//   o = the recurrence (seqpar/matrix_state.h) with scale K^-0.5;
//   y = x + W_o headnorm(o);  out = y + MLP(rmsnorm(y)).
//
// Design choices that are not obvious:
// - The recurrence goes through the SequenceBackend, so the module runs unchanged on one rank
//   (seqpar::chunk_*) or with the sequence split over a group (seqpar::sp::chunk_*).
// - step() runs one token with the per-step recurrence written out (S_t from S_{t-1} with plain
//   tensor ops), an independent path the tests compare with the chunked forward.
#pragma once

#include <seqpar/models/manifold_scan.h>

#include <torch/torch.h>

#include <string>

namespace seqpar::models {

struct MatrixStateBlockOptions {
  std::string variant = "gated_deltanet";  // or "gla"
  int64_t d_model = 64;
  int64_t heads = 4;
  int64_t mlp_hidden = 256;
  int64_t chunk_size = 64;
};

class MatrixStateBlockImpl : public torch::nn::Module {
 public:
  explicit MatrixStateBlockImpl(const MatrixStateBlockOptions& options);

  // x: (batch, time, d_model) float32. state (optional, (batch, heads, K, V)) is read as the
  // state entering the sequence when defined and replaced by the state after it (with
  // sp_backend: the global final state).
  at::Tensor forward(const at::Tensor& x, const SequenceBackend& backend,
                     at::Tensor* state = nullptr);

  // One token: x (batch, d_model). state is updated in place (zeros when undefined).
  at::Tensor step(const at::Tensor& x, at::Tensor& state);

  const MatrixStateBlockOptions& options() const { return options_; }

 private:
  bool gla() const { return options_.variant == "gla"; }
  // q, k, v (..., heads, K) and g ((..., heads, K) for GLA, (..., heads) otherwise), beta.
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> project(
      const at::Tensor& force);
  at::Tensor readout(const at::Tensor& x, const at::Tensor& o);

  MatrixStateBlockOptions options_;
  int64_t head_dim_;
  RMSNorm force_norm_{nullptr}, mlp_norm_{nullptr};
  torch::nn::Linear w_qkv_{nullptr}, w_g_{nullptr}, w_beta_{nullptr}, w_o_{nullptr};
  torch::nn::Linear mlp_in_{nullptr}, mlp_out_{nullptr};
};
TORCH_MODULE(MatrixStateBlock);

}  // namespace seqpar::models
