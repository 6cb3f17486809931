// PsmBlock, its aggregator and transformer layer (seqpar/models/psm_block.h documents the math
// and the choices).
#include "seqpar/models/psm_block.h"

#include "seqpar/models/recompute.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace seqpar::models {

TransformerLayerImpl::TransformerLayerImpl(int64_t d_model, int64_t heads, int64_t mlp_hidden)
    : heads_(heads) {
  TORCH_CHECK(d_model > 0 && heads > 0 && d_model % heads == 0, "TransformerLayer: d_model (",
              d_model, ") must be a positive multiple of heads (", heads, ")");
  attn_norm_ = register_module("attn_norm", RMSNorm(d_model));
  mlp_norm_ = register_module("mlp_norm", RMSNorm(d_model));
  qkv_ = register_module("qkv", torch::nn::Linear(torch::nn::LinearOptions(d_model, 3 * d_model).bias(false)));
  out_ = register_module("out", torch::nn::Linear(d_model, d_model));
  mlp_in_ = register_module("mlp_in", torch::nn::Linear(d_model, mlp_hidden));
  mlp_out_ = register_module("mlp_out", torch::nn::Linear(mlp_hidden, d_model));
}

at::Tensor TransformerLayerImpl::forward(const at::Tensor& x, const at::Tensor& mask) {
  const int64_t N = x.size(0), L = x.size(1), D = x.size(2), dh = D / heads_;
  auto qkv = qkv_->forward(attn_norm_->forward(x)).view({N, L, 3, heads_, dh}).permute({2, 0, 3, 1, 4});
  // PyTorch's fused attention (flash / memory-efficient kernels where the shape and dtype allow,
  // the plain formula otherwise): the (L x L) probabilities per head are not kept for backward,
  // which at 2^16 tokens in chunks of 256 was most of the layer's memory (docs/psm.md).
  std::optional<at::Tensor> additive;
  if (mask.defined()) additive = mask.to(x.scalar_type());
  auto y = at::scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], additive, /*dropout_p=*/0.0,
                                            /*is_causal=*/false)
               .transpose(1, 2)
               .reshape({N, L, D});
  auto h = x + out_->forward(y);
  return h + mlp_out_->forward(torch::gelu(mlp_in_->forward(mlp_norm_->forward(h))));
}

PsmAggregatorImpl::PsmAggregatorImpl(int64_t chunk, int64_t d_model, int64_t heads,
                                     int64_t mlp_hidden)
    : chunk_(chunk) {
  position_ = register_parameter("position", torch::randn({2 * chunk, d_model}) * 0.02);
  layer_ = register_module("layer", TransformerLayer(d_model, heads, mlp_hidden));
  out_norm_ = register_module("out_norm", RMSNorm(d_model));
}

at::Tensor PsmAggregatorImpl::forward(const at::Tensor& earlier, const at::Tensor& later) {
  auto z = torch::cat({earlier + position_.narrow(0, 0, chunk_),
                       later + position_.narrow(0, chunk_, chunk_)}, 1);
  return out_norm_->forward(layer_->forward(z).narrow(1, chunk_, chunk_));
}

PsmBlockImpl::PsmBlockImpl(const PsmBlockOptions& options) : options_(options) {
  const int64_t D = options.d_model, c = options.chunk_size;
  TORCH_CHECK(c >= 1, "PsmBlock: chunk_size must be >= 1, got ", c);
  TORCH_CHECK(D > 0 && options.heads > 0 && D % options.heads == 0, "PsmBlock: d_model (", D,
              ") must be a positive multiple of heads (", options.heads, ")");
  enc_norm_ = register_module("enc_norm", RMSNorm(D));
  enc_ = register_module("enc", torch::nn::Linear(D, D));
  agg_ = register_module("agg", PsmAggregator(c, D, options.heads, options.mlp_hidden));
  inf_ = register_module("inf", TransformerLayer(D, options.heads, options.mlp_hidden));
  empty_state_ = register_parameter("empty_state", torch::randn({c, D}) * 0.02);
  state_position_ = register_parameter("state_position", torch::randn({c, D}) * 0.02);
  token_position_ = register_parameter("token_position", torch::randn({c, D}) * 0.02);
}

psm::Aggregate PsmBlockImpl::aggregate() {
  PsmAggregator agg = agg_;
  std::vector<at::Tensor> params = agg_->parameters();
  return {[agg, params, on = options_.recompute](const at::Tensor& l, const at::Tensor& r) {
            return recompute([agg](const std::vector<at::Tensor>& v) mutable {
                               return agg->forward(v[0], v[1]);
                             },
                             {l, r}, params, on);
          },
          params};
}

at::Tensor PsmBlockImpl::encode(const at::Tensor& tokens) {
  return enc_->forward(enc_norm_->forward(tokens));
}

at::Tensor PsmBlockImpl::infer(const at::Tensor& prefix, const at::Tensor& tokens) {
  const int64_t c = options_.chunk_size, t = tokens.size(1);
  // Rows 0..c-1 (the prefix state) see the state; token row i sees the state and tokens <= i.
  auto opts = tokens.options();
  auto row = torch::arange(c + t, opts.dtype(torch::kInt64)).unsqueeze(1);
  auto col = torch::arange(c + t, opts.dtype(torch::kInt64)).unsqueeze(0);
  auto visible = (col < c) | ((row >= c) & (col <= row));
  auto mask = torch::zeros({c + t, c + t}, opts).masked_fill(
      visible.logical_not(), -std::numeric_limits<float>::infinity());
  auto z = torch::cat({prefix + state_position_, tokens + token_position_.narrow(0, 0, t)}, 1);
  return inf_->forward(z, mask).narrow(1, c, t);
}

std::vector<at::Tensor> PsmBlockImpl::inf_parameters() const {
  std::vector<at::Tensor> p = inf_->parameters();
  p.push_back(state_position_);
  p.push_back(token_position_);
  return p;
}

at::Tensor PsmBlockImpl::empty_prefix(int64_t batch) const {
  return empty_state_.unsqueeze(0).expand({batch, options_.chunk_size, options_.d_model});
}

psm::BinaryCounter& PsmBlockImpl::counter_of(PsmState& state) {
  if (!state.counter) state.counter = std::make_shared<psm::BinaryCounter>(aggregate());
  return *state.counter;
}

at::Tensor PsmBlockImpl::forward(const at::Tensor& x, const SequenceBackend& backend,
                                 PsmState* state) {
  const int64_t D = options_.d_model, c = options_.chunk_size;
  TORCH_CHECK(x.dim() == 3 && x.size(2) == D, "PsmBlock: x must be (batch, time, ", D, "), got ",
              x.sizes());
  if (state) {  // continue the stream chunk by chunk (one rank)
    std::vector<at::Tensor> out;
    for (int64_t t = 0; t < x.size(1); ++t) out.push_back(step(x.select(1, t), *state));
    return out.empty() ? x : torch::stack(out, 1);
  }
  TORCH_CHECK(bool(backend.psm_scan), "PsmBlock: the sequence backend has no psm scan");
  const int64_t B = x.size(0), T = x.size(1), n = (T + c - 1) / c;
  if (T == 0) return x;
  at::Tensor padded = n * c == T ? x : torch::cat({x, torch::zeros({B, n * c - T, D}, x.options())}, 1);
  at::Tensor chunks = padded.view({B, n, c, D});
  psm::Prefixes prefixes = backend.psm_scan(encode(chunks), aggregate(), n * c != T);
  at::Tensor states = prefixes.states;
  if (prefixes.first_is_identity) {
    // where, not cat: the placeholder of chunk 0 keeps its (zero) gradient path, which the
    // sequence-parallel scan's backward exchange relies on.
    auto first = (torch::arange(n, x.options().dtype(torch::kInt64)) == 0).view({1, n, 1, 1});
    states = torch::where(first, empty_state_.view({1, 1, c, D}), states);
  }
  at::Tensor prefix = states.reshape({B * n, c, D}), tokens = chunks.reshape({B * n, c, D});
  // With recompute, Inf runs over slices of about recompute_slice_tokens tokens, each recomputed
  // on its own: the backward then holds one slice's activations at a time, not every chunk's.
  const int64_t per =
      options_.recompute ? std::max<int64_t>(1, options_.recompute_slice_tokens / c) : B * n;
  const std::vector<at::Tensor> params = inf_parameters();
  std::vector<at::Tensor> parts;
  for (int64_t i = 0; i < B * n; i += per) {
    const int64_t len = std::min(per, B * n - i);
    parts.push_back(recompute([this](const std::vector<at::Tensor>& v) { return infer(v[0], v[1]); },
                              {prefix.narrow(0, i, len), tokens.narrow(0, i, len)}, params,
                              options_.recompute));
  }
  const at::Tensor out = parts.size() == 1 ? parts[0] : torch::cat(parts, 0);
  return out.reshape({B, n * c, D}).narrow(1, 0, T);
}

at::Tensor PsmBlockImpl::step(const at::Tensor& x, PsmState& state) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == options_.d_model, "PsmBlock::step: x must be (batch, ",
              options_.d_model, "), got ", x.sizes());
  psm::BinaryCounter& counter = counter_of(state);
  state.pending = state.pending.defined() ? torch::cat({state.pending, x.unsqueeze(1)}, 1)
                                          : x.unsqueeze(1);
  const auto prefix = counter.prefix();
  at::Tensor out = infer(prefix ? *prefix : empty_prefix(x.size(0)), state.pending).select(1, -1);
  if (state.pending.size(1) == options_.chunk_size) {
    counter.push(encode(state.pending));
    state.pending = at::Tensor();
  }
  return out;
}

}  // namespace seqpar::models
