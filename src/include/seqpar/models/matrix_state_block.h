// MatrixStateBlock: a gated linear attention (GLA) or gated DeltaNet layer as a torch::nn
// module, for the byte LM next to ManifoldScan (docs/matrix_state.md, docs/training.md).
//
// For an input x (batch, time, d_model), F = rmsnorm(x), per head (K = V = d_model / heads):
//   (q, k, v) = W_qkv F, then, with conv_size = c > 0, each channel of (q, k, v) through its
//   own causal convolution over the last c tokens and SiLU (flash-linear-attention's
//   ShortConvolution);
//   GLA:            g = logsigmoid(W_g F) / 16 per key channel (decays start near 1, as in
//                   flash-linear-attention's GLA layer);
//   gated DeltaNet: k = k / |k|, g = logsigmoid(W_g F) per head (its bias starts at 4),
//                   beta = sigmoid(W_beta F) per head;
//   with qk_l2norm, q = q / |q| and k = k / |k| per head in either variant (flash-linear-
//   attention's use_qk_l2norm_in_kernel);
//   o = the recurrence (seqpar/matrix_state.h) with scale K^-0.5;
//   y = x + W_o headnorm(o);  out = y + MLP(rmsnorm(y)).
//
// Design choices that are not obvious:
// - The recurrence goes through the SequenceBackend, so the module runs unchanged on one rank
//   (seqpar::chunk_*) or with the sequence split over a group (seqpar::sp::chunk_*).
// - The short convolution lets a key see the token before it (recall of a value stored one
//   token after its key). Its first c - 1 outputs read the c - 1 tokens before the slice,
//   which under sequence parallelism lie on earlier ranks: SequenceBackend::previous_steps
//   brings them, as one more cross-rank scan (seqpar/sp.h).
// - With recompute_slice_tokens, the state S passes from slice to slice; the slices' outputs
//   equal one call's up to rounding (the chunk states compose in another order).
// - step() runs one token with the per-step recurrence written out (S_t from S_{t-1} with plain
//   tensor ops), an independent path the tests compare with the chunked forward.
#pragma once

#include <seqpar/models/manifold_scan.h>
#include <seqpar/models/model_kind.h>

#include <torch/torch.h>

#include <string>

namespace seqpar::models {

struct MatrixStateBlockOptions : BlockOptions {
  ModelKind variant = ModelKind::kGatedDeltaNet;  // or kGla
  int64_t chunk_size = 64;
  int64_t conv_size = 0;  // tokens seen by the short convolution (0: none)
  bool qk_l2norm = false;  // L2-normalise q and k per head (gated DeltaNet always normalises k)
  // > 0: the recurrence runs over slices of about this many tokens (a multiple of chunk_size),
  // each recomputed in backward (seqpar/models/recompute.h), so that its activations are held
  // for one slice at a time instead of the whole sequence. One rank only (local backend).
  int64_t recompute_slice_tokens = 0;
};

// Recurrent state of a MatrixStateBlock: S (batch, heads, K, V) and, with a short convolution,
// the last conv_size - 1 inputs of it (batch, conv_size - 1, 3 * d_model).
struct MatrixBlockState {
  at::Tensor S;
  at::Tensor conv;
};

class MatrixStateBlockImpl : public torch::nn::Module {
 public:
  explicit MatrixStateBlockImpl(const MatrixStateBlockOptions& options);

  // x: (batch, time, d_model) float32. state (optional) is read as the state entering the
  // sequence where defined and replaced by the state after it (with sp_backend: the global
  // final state). documents: packed documents (batch 1), the recurrence and the convolution's
  // windows restart at each start; not with state or recompute_slice_tokens.
  at::Tensor forward(const at::Tensor& x, const SequenceBackend& backend,
                     MatrixBlockState* state = nullptr, const Documents& documents = std::nullopt);

  // One token: x (batch, d_model). state is updated in place (zeros where undefined).
  at::Tensor step(const at::Tensor& x, MatrixBlockState& state);

  const MatrixStateBlockOptions& options() const { return options_; }

  // The recurrence's inputs: q, k, v (..., heads, K) and g ((..., heads, K) for GLA,
  // (..., heads) otherwise), beta, from F = rmsnorm(x) and the (convolved) W_qkv F. Public
  // so that tests can check them; forward and step both go through it.
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> project(
      const at::Tensor& force, const at::Tensor& qkv);

 private:
  bool gla() const { return options_.variant == ModelKind::kGla; }
  at::Tensor readout(const at::Tensor& x, const at::Tensor& o);
  // (o, S_T) of the recurrence, in one call or over recomputed slices.
  std::tuple<at::Tensor, at::Tensor> recurrence(const SequenceBackend& backend, const at::Tensor& q,
                                                const at::Tensor& k, const at::Tensor& v,
                                                const at::Tensor& g, const at::Tensor& beta,
                                                const std::optional<at::Tensor>& s0,
                                                const Documents& documents);

  MatrixStateBlockOptions options_;
  int64_t head_dim_;
  RMSNorm force_norm_{nullptr}, mlp_norm_{nullptr};
  torch::nn::Linear w_qkv_{nullptr}, w_g_{nullptr}, w_beta_{nullptr}, w_o_{nullptr};
  torch::nn::Linear mlp_in_{nullptr}, mlp_out_{nullptr};
  at::Tensor conv_weight_;  // (3 * d_model, conv_size) when conv_size > 0
};
TORCH_MODULE(MatrixStateBlock);

}  // namespace seqpar::models
