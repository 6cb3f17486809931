// MatrixStateBlock (seqpar/models/matrix_state_block.h documents the math and the choices).
#include "seqpar/models/matrix_state_block.h"

#include <seqpar/previous_steps.h>

#include "seqpar/models/recompute.h"

#include <cmath>

namespace seqpar::models {

MatrixStateBlockImpl::MatrixStateBlockImpl(const MatrixStateBlockOptions& options)
    : options_(options) {
  const int64_t D = options.d_model, H = options.heads;
  TORCH_CHECK(has_matrix_state(options.variant),
              "MatrixStateBlock: variant must be gla or gated_deltanet, got '",
              model_kind_name(options.variant), "'");
  TORCH_CHECK(D > 0 && H > 0 && D % H == 0, "MatrixStateBlock: d_model (", D,
              ") must be a positive multiple of heads (", H, ")");
  TORCH_CHECK(options.conv_size >= 0, "MatrixStateBlock: conv_size must be >= 0, got ",
              options.conv_size);
  TORCH_CHECK(options.recompute_slice_tokens >= 0,
              "MatrixStateBlock: recompute_slice_tokens must be >= 0, got ",
              options.recompute_slice_tokens);
  head_dim_ = D / H;
  force_norm_ = register_module("force_norm", RMSNorm(D));
  mlp_norm_ = register_module("mlp_norm", RMSNorm(D));
  w_qkv_ = register_module("w_qkv", torch::nn::Linear(torch::nn::LinearOptions(D, 3 * D).bias(false)));
  w_g_ = register_module("w_g", torch::nn::Linear(D, gla() ? D : H));
  if (!gla()) w_beta_ = register_module("w_beta", torch::nn::Linear(D, H));
  w_o_ = register_module("w_o", torch::nn::Linear(D, D));
  mlp_in_ = register_module("mlp_in", torch::nn::Linear(D, options.mlp_hidden));
  mlp_out_ = register_module("mlp_out", torch::nn::Linear(options.mlp_hidden, D));
  if (options.conv_size > 0) {
    // torch.nn.Conv1d's default initialisation for a depthwise kernel: U(-1/sqrt(c), 1/sqrt(c)).
    const double bound = 1.0 / std::sqrt(static_cast<double>(options.conv_size));
    conv_weight_ = register_parameter(
        "conv", torch::empty({3 * D, options.conv_size}).uniform_(-bound, bound));
  }
  torch::NoGradGuard no_grad;
  if (!gla()) w_g_->bias.fill_(4.0);  // decays start near sigmoid(4) = 0.98
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
MatrixStateBlockImpl::project(const at::Tensor& force, const at::Tensor& qkv_in) {
  const int64_t H = options_.heads, K = head_dim_;
  auto heads = [&](const at::Tensor& t) {
    auto shape = t.sizes().vec();
    shape.pop_back();
    shape.insert(shape.end(), {H, K});
    return t.reshape(shape);
  };
  auto qkv = qkv_in.chunk(3, -1);
  auto q = heads(qkv[0]), k = heads(qkv[1]), v = heads(qkv[2]);
  auto l2_normalised = [](const at::Tensor& t) {
    return t * torch::rsqrt(t.pow(2).sum(-1, /*keepdim=*/true) + 1e-6);
  };
  if (options_.qk_l2norm) q = l2_normalised(q);
  if (options_.qk_l2norm || !gla()) k = l2_normalised(k);
  at::Tensor g, beta;
  if (gla()) {
    g = heads(torch::log_sigmoid(w_g_->forward(force)) / 16.0);
  } else {
    g = torch::log_sigmoid(w_g_->forward(force));
    beta = torch::sigmoid(w_beta_->forward(force));
  }
  return {q, k, v, g, beta};
}

at::Tensor MatrixStateBlockImpl::readout(const at::Tensor& x, const at::Tensor& o) {
  // Per-head RMS normalisation of the outputs, then the projection and the MLP.
  auto normed = o * torch::rsqrt(o.pow(2).mean(-1, /*keepdim=*/true) + 1e-6);
  auto flat = normed.sizes().vec();
  flat.pop_back();
  flat.back() = options_.d_model;
  auto y = x + w_o_->forward(normed.reshape(flat));
  return y + mlp_out_->forward(torch::gelu(mlp_in_->forward(mlp_norm_->forward(y))));
}

at::Tensor MatrixStateBlockImpl::forward(const at::Tensor& x, const SequenceBackend& backend,
                                         MatrixBlockState* state, const Documents& documents) {
  TORCH_CHECK(x.dim() == 3 && x.size(2) == options_.d_model, "MatrixStateBlock: x must be (batch, time, ",
              options_.d_model, "), got ", x.sizes());
  TORCH_CHECK(gla() ? bool(backend.chunk_gla) : bool(backend.chunk_gated_delta_rule),
              "MatrixStateBlock: the sequence backend has no ", model_kind_name(options_.variant),
              " recurrence");
  TORCH_CHECK(!documents || !state,
              "MatrixStateBlock: documents (packed sequences) cannot be combined with a state");
  const at::Tensor force = force_norm_->forward(x);
  at::Tensor qkv = w_qkv_->forward(force);
  if (options_.conv_size > 0) {
    const int64_t width = options_.conv_size - 1;
    at::Tensor before = qkv.narrow(1, 0, 0);
    // A window of one step reads nothing before it, so it never crosses a document start.
    std::optional<at::Tensor> bounds;
    if (documents && width > 0) bounds = backend.local_bounds(*documents, qkv.size(1));
    if (width > 0) {
      TORCH_CHECK(bool(backend.previous_steps),
                  "MatrixStateBlock: the sequence backend has no previous_steps (conv_size > 1)");
      std::optional<at::Tensor> tail;
      if (state && state->conv.defined()) tail = state->conv;
      at::Tensor last;
      std::tie(before, last) = backend.previous_steps(qkv, width, tail, documents);
      if (state) state->conv = last;
    }
    qkv = seqpar::causal_conv1d(qkv, before, conv_weight_, std::nullopt, /*silu=*/true, bounds);
  }
  auto [q, k, v, g, beta] = project(force, qkv);
  std::optional<at::Tensor> s0;
  if (state && state->S.defined()) s0 = state->S;
  auto [o, last] = recurrence(backend, q, k, v, g, beta, s0, documents);
  if (state) state->S = last;
  return readout(x, o);
}

std::tuple<at::Tensor, at::Tensor> MatrixStateBlockImpl::recurrence(
    const SequenceBackend& backend, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& g, const at::Tensor& beta, const std::optional<at::Tensor>& s0,
    const Documents& documents) {
  const int64_t chunk = options_.chunk_size;
  // By value: a recomputed slice calls it again in backward, after this frame has returned.
  auto call = [is_gla = gla(), chunk, gla_fn = backend.chunk_gla,
               delta_fn = backend.chunk_gated_delta_rule](
                  const at::Tensor& q_, const at::Tensor& k_, const at::Tensor& v_,
                  const at::Tensor& g_, const at::Tensor& beta_, const std::optional<at::Tensor>& s,
                  const Documents& docs) {
    return is_gla ? gla_fn(q_, k_, v_, g_, s, chunk, docs)
                  : delta_fn(q_, k_, v_, g_, beta_, s, chunk, docs);
  };
  const int64_t T = q.size(1);
  // Slices of whole chunks, so that every slice chunks the sequence as one call would.
  const int64_t slice = (options_.recompute_slice_tokens + chunk - 1) / chunk * chunk;
  if (slice == 0 || T <= slice) return call(q, k, v, g, beta, s0, documents);
  TORCH_CHECK(!documents,
              "MatrixStateBlock: recompute_slice_tokens cannot be combined with documents "
              "(packed sequences)");
  TORCH_CHECK(!backend.sequence_parallel,
              "MatrixStateBlock: recompute_slice_tokens needs the local backend (one rank); "
              "with sequence parallelism each rank's slice is already 1/P of the sequence");
  std::vector<at::Tensor> outputs;
  at::Tensor S = s0 ? *s0 : at::Tensor();
  for (int64_t t0 = 0; t0 < T; t0 += slice) {
    const int64_t n = std::min(slice, T - t0);
    const std::vector<at::Tensor> in = {q.narrow(1, t0, n), k.narrow(1, t0, n), v.narrow(1, t0, n),
                                        g.narrow(1, t0, n),
                                        beta.defined() ? beta.narrow(1, t0, n) : beta, S};
    const auto out = recompute(
        [call](const std::vector<at::Tensor>& a) {
          std::optional<at::Tensor> s;
          if (a[5].defined()) s = a[5];
          auto [o, last] = call(a[0], a[1], a[2], a[3], a[4], s, std::nullopt);
          return std::vector<at::Tensor>{o, last};
        },
        in, /*params=*/{});
    outputs.push_back(out[0]);
    S = out[1];
  }
  return {at::cat(outputs, 1), S};
}

at::Tensor MatrixStateBlockImpl::step(const at::Tensor& x, MatrixBlockState& state) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == options_.d_model,
              "MatrixStateBlock::step: x must be (batch, ", options_.d_model, "), got ", x.sizes());
  const at::Tensor force = force_norm_->forward(x);
  at::Tensor qkv = w_qkv_->forward(force);  // (B, 3 D)
  if (options_.conv_size > 0) {
    // The window of the last conv_size inputs, oldest first, against the kernel written out.
    const int64_t width = options_.conv_size - 1;
    if (!state.conv.defined()) state.conv = torch::zeros({x.size(0), width, qkv.size(1)}, qkv.options());
    auto window = at::cat({state.conv, qkv.unsqueeze(1)}, 1);  // (B, conv_size, 3 D)
    state.conv = window.narrow(1, 1, width);
    qkv = torch::silu((window * conv_weight_.t().unsqueeze(0)).sum(1));
  }
  auto [q, k, v, g, beta] = project(force, qkv);  // (B, H, K), g (B, H[, K])
  const int64_t K = head_dim_;
  at::Tensor& S = state.S;
  if (!S.defined()) S = torch::zeros({x.size(0), options_.heads, K, K}, x.options());
  auto kv = k.unsqueeze(-1) * v.unsqueeze(-2);  // (B, H, K, V)
  if (gla()) {
    S = g.exp().unsqueeze(-1) * S + kv;
  } else {
    auto b = beta.unsqueeze(-1).unsqueeze(-1);
    auto kS = torch::matmul(k.unsqueeze(-2), S);  // (B, H, 1, V)
    S = g.exp().unsqueeze(-1).unsqueeze(-1) * (S - b * k.unsqueeze(-1) * kS) + b * kv;
  }
  auto o = torch::matmul(S.transpose(-1, -2), q.unsqueeze(-1)).squeeze(-1) /
           std::sqrt(static_cast<double>(K));
  return readout(x, o);
}

}  // namespace seqpar::models
