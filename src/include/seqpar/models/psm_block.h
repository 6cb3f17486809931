// PsmBlock: a transformer prefix-scannable model layer (T-PSM, after "Sequential-Parallel
// Duality in Prefix Scannable Models", Yau et al.; docs/psm.md) as a torch::nn module.
//
// The sequence is cut into chunks of c tokens. For an input x (batch, time, d_model):
//   Enc   m_i = W_enc rmsnorm(x) over chunk i: a chunk state of shape (c, d_model);
//   Agg   Agg(s, m) = rmsnorm(right half of Layer([s + e_left; m + e_right])), Layer a
//         bidirectional pre-norm transformer layer over the 2c states, e learned position
//         embeddings: a learned aggregation that is not associative;
//   scan  s_i = the exclusive prefix of chunk i under Agg in the static Blelloch order
//         (seqpar/psm.h), the identity for the first chunk replaced by a learned state;
//   Inf   out_i = token half of Layer'([s_i + p_state; x_i + p_token]) with a mask that lets
//         every token see the whole prefix state and the tokens before it in its chunk.
//
// Design choices that are not obvious:
// - The scan goes through the SequenceBackend, so the layer runs on one rank
//   (psm::static_scan) or with the chunks split over a group (psm::sp_static_scan), unchanged.
// - A sequence that is not a whole number of chunks is padded at the end; padded tokens come
//   after every real one in the causal mask and the padded chunk's state is the last leaf,
//   which no real prefix reads. Across ranks only the last rank's slice may end that way
//   (the scan refuses otherwise).
// - Streaming (step) keeps a psm::BinaryCounter of chunk states and the tokens of the current
//   chunk; its prefixes equal the static scan's, so streamed outputs equal the parallel ones.
//   forward with a state runs the same counter chunk by chunk (O(n) sequential Agg calls
//   instead of O(log n)) so that calls can continue each other; one rank only.
#pragma once

#include <seqpar/models/manifold_scan.h>
#include <seqpar/psm.h>

#include <torch/torch.h>

#include <memory>

namespace seqpar::models {

struct PsmBlockOptions : BlockOptions {
  int64_t chunk_size = 16;
  // Recompute every Agg and Inf call in backward instead of keeping its activations
  // (seqpar/models/recompute.h): memory per token falls from the layers' activations to their
  // inputs, for about one more forward of the layer.
  bool recompute = true;
  // With recompute: Inf runs (and is recomputed) over slices of about this many tokens.
  int64_t recompute_slice_tokens = 8192;
};

// A pre-norm transformer layer over (N, L, d_model) with an additive attention mask (L, L)
// (0 or -inf; undefined: attend everywhere).
class TransformerLayerImpl : public torch::nn::Module {
 public:
  TransformerLayerImpl(int64_t d_model, int64_t heads, int64_t mlp_hidden);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mask = {});

 private:
  int64_t heads_;
  RMSNorm attn_norm_{nullptr}, mlp_norm_{nullptr};
  torch::nn::Linear qkv_{nullptr}, out_{nullptr}, mlp_in_{nullptr}, mlp_out_{nullptr};
};
TORCH_MODULE(TransformerLayer);

// The learned aggregation: (N, c, d) x (N, c, d) -> (N, c, d).
class PsmAggregatorImpl : public torch::nn::Module {
 public:
  PsmAggregatorImpl(int64_t chunk, int64_t d_model, int64_t heads, int64_t mlp_hidden);
  at::Tensor forward(const at::Tensor& earlier, const at::Tensor& later);

 private:
  int64_t chunk_;
  at::Tensor position_;  // (2c, d)
  TransformerLayer layer_{nullptr};
  RMSNorm out_norm_{nullptr};
};
TORCH_MODULE(PsmAggregator);

// Streaming state of one layer.
struct PsmState {
  std::shared_ptr<psm::BinaryCounter> counter;
  at::Tensor pending;  // (batch, t < c, d_model): the tokens of the current chunk so far
};

class PsmBlockImpl : public torch::nn::Module {
 public:
  explicit PsmBlockImpl(const PsmBlockOptions& options);

  // x: (batch, time, d_model). state (optional) is continued and updated (see above).
  at::Tensor forward(const at::Tensor& x, const SequenceBackend& backend,
                     PsmState* state = nullptr);
  // One token: x (batch, d_model).
  at::Tensor step(const at::Tensor& x, PsmState& state);

  // Agg with its parameters, for the scans.
  psm::Aggregate aggregate();
  const PsmBlockOptions& options() const { return options_; }

 private:
  at::Tensor encode(const at::Tensor& tokens);  // (..., c, d) -> (..., c, d)
  // prefix (N, c, d), tokens (N, t <= c, d) -> (N, t, d).
  at::Tensor infer(const at::Tensor& prefix, const at::Tensor& tokens);
  // The parameters infer reads (Inf's and the position tables).
  std::vector<at::Tensor> inf_parameters() const;
  at::Tensor empty_prefix(int64_t batch) const;
  psm::BinaryCounter& counter_of(PsmState& state);

  PsmBlockOptions options_;
  RMSNorm enc_norm_{nullptr};
  torch::nn::Linear enc_{nullptr};
  PsmAggregator agg_{nullptr};
  TransformerLayer inf_{nullptr};
  at::Tensor empty_state_;                      // (c, d): the identity prefix's stand-in
  at::Tensor state_position_, token_position_;  // (c, d) each
};
TORCH_MODULE(PsmBlock);

}  // namespace seqpar::models
