// ManifoldScan and RMSNorm (seqpar/models/manifold_scan.h documents the math and the choices).
#include "seqpar/models/manifold_scan.h"

#include <cmath>

namespace seqpar::models {

RMSNormImpl::RMSNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight_ = register_parameter("weight", torch::ones({dim}));
}

at::Tensor RMSNormImpl::forward(const at::Tensor& x) {
  return x * torch::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps_) * weight_;
}

namespace {

// softplus(kStepBiasInit) = 1, so dt starts at the head's base time scale.
const double kStepBiasInit = std::log(std::exp(1.0) - 1.0);

}  // namespace

ManifoldScanImpl::ManifoldScanImpl(const ManifoldScanOptions& options) : options_(options) {
  const int64_t D = options.d_model, H = options.heads;
  TORCH_CHECK(D > 0 && H > 0 && D % H == 0, "ManifoldScan: d_model (", D,
              ") must be a positive multiple of heads (", H, ")");
  TORCH_CHECK(options.dt_min > 0 && options.dt_max >= options.dt_min,
              "ManifoldScan: need 0 < dt_min <= dt_max (got ", options.dt_min, ", ",
              options.dt_max, ")");
  TORCH_CHECK(options.retention_min > 0 && options.retention_max < 1 &&
                  options.retention_min <= options.retention_max,
              "ManifoldScan: need 0 < retention_min <= retention_max < 1");
  TORCH_CHECK(!(options.second_order && options.rotation),
              "ManifoldScan: second_order cannot be combined with rotation (complex retention; "
              "the block scan is real)");
  TORCH_CHECK(!(options.linoss && (options.rotation || options.second_order)),
              "ManifoldScan: linoss cannot be combined with rotation or second_order (it "
              "replaces the retention by its own oscillator)");
  TORCH_CHECK(!options.linoss || (options.stiffness_min > 0 &&
                                  options.stiffness_max >= options.stiffness_min),
              "ManifoldScan: linoss needs 0 < stiffness_min <= stiffness_max (got ",
              options.stiffness_min, ", ", options.stiffness_max, ")");
  force_norm_ = register_module("force_norm", RMSNorm(D));
  mlp_norm_ = register_module("mlp_norm", RMSNorm(D));
  if (!options.linoss) w_a_ = register_module("w_a", torch::nn::Linear(D, D));
  w_b_ = register_module("w_b", torch::nn::Linear(torch::nn::LinearOptions(D, D).bias(false)));
  w_dt_ = register_module("w_dt", torch::nn::Linear(D, H));
  const int64_t features = (options.rotation ? 4 : 2) * D;
  w_o_ = register_module("w_o", torch::nn::Linear(features, D));
  mlp_in_ = register_module("mlp_in", torch::nn::Linear(D, options.mlp_hidden));
  mlp_out_ = register_module("mlp_out", torch::nn::Linear(options.mlp_hidden, D));

  torch::NoGradGuard no_grad;
  auto c = torch::arange(D, torch::kFloat64) / std::max<int64_t>(D - 1, 1);
  if (options.linoss) {
    // Stiffness spread geometrically across channels, so that oscillation periods and damping
    // (1 / sqrt(1 + dt^2 w) per step) range from short to long memory from the first step.
    auto w0 = options.stiffness_min * torch::pow(options.stiffness_max / options.stiffness_min, c);
    stiffness_raw_ = register_parameter("stiffness_raw",
                                        torch::log(torch::expm1(w0)).to(torch::kFloat32));
  } else {
    // Retention starts spread from short to long memory across channels (1 - a geometric),
    // and depends on the input only weakly, so long-range paths exist from the first step.
    auto one_minus_a = (1 - options.retention_min) *
                       torch::pow((1 - options.retention_max) / (1 - options.retention_min), c);
    auto a0 = 1 - one_minus_a;
    w_a_->bias.copy_(torch::log(a0 / (1 - a0)).to(torch::kFloat32));
    w_a_->weight.mul_(0.1);
  }
  w_dt_->bias.fill_(kStepBiasInit);
  w_dt_->weight.mul_(0.1);
  // Base time scales geometric across heads, from dt_max (head 0) down to dt_min.
  auto h = torch::arange(H, torch::kFloat64) / std::max<int64_t>(H - 1, 1);
  auto base = options.dt_max * torch::pow(options.dt_min / options.dt_max, h);
  base_step_ = register_buffer("base_step", base.to(torch::kFloat32));
  if (options.rotation) {
    phase_ = register_parameter("phase", (torch::rand({D}) * 2 - 1) * (M_PI / 8));
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ManifoldScanImpl::coefficients(
    const at::Tensor& force) {
  const int64_t H = options_.heads, D = options_.d_model;
  auto decay = options_.linoss ? at::Tensor() : torch::sigmoid(w_a_->forward(force));
  auto head_step = torch::softplus(w_dt_->forward(force)) * base_step_;  // (..., H)
  auto lead = head_step.sizes().vec();
  lead.pop_back();
  auto step_shape = lead, head_shape = lead;
  step_shape.push_back(D);
  head_shape.insert(head_shape.end(), {H, 1});
  auto dt = head_step.reshape(head_shape).expand(
      [&] { auto s = lead; s.insert(s.end(), {H, D / H}); return s; }()).reshape(step_shape);
  auto drive = dt * w_b_->forward(force);
  if (!options_.rotation) return {decay, drive, dt};
  auto a = torch::polar(decay, phase_.expand_as(decay));
  return {a, drive.to(torch::kComplexFloat), dt};
}

at::Tensor ManifoldScanImpl::head_normalize(const at::Tensor& z) const {
  auto real = z.is_complex() ? torch::view_as_real(z) : z;
  auto lead = z.sizes().vec();
  lead.pop_back();
  auto grouped = lead;
  grouped.insert(grouped.end(), {options_.heads, -1});
  auto g = real.reshape(grouped);
  g = g * torch::rsqrt(g.pow(2).mean(-1, /*keepdim=*/true) + 1e-6);
  auto flat = lead;
  flat.push_back(-1);
  return g.reshape(flat);
}

at::Tensor ManifoldScanImpl::readout(const at::Tensor& x, const at::Tensor& position,
                                    const at::Tensor& velocity) {
  auto features = torch::cat({head_normalize(position), head_normalize(velocity)}, -1);
  auto y = x + w_o_->forward(features);
  return y + mlp_out_->forward(torch::gelu(mlp_in_->forward(mlp_norm_->forward(y))));
}

at::Tensor ManifoldScanImpl::stiffness() const { return torch::softplus(stiffness_raw_); }

namespace {

// The 2x2 blocks [[a00, a01], [a10, a11]] as one (..., 2, 2) tensor.
at::Tensor blocks(const at::Tensor& a00, const at::Tensor& a01, const at::Tensor& a10,
                  const at::Tensor& a11) {
  return torch::stack({torch::stack({a00, a01}, -1), torch::stack({a10, a11}, -1)}, -2);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> ManifoldScanImpl::integrate_block(
    const SequenceBackend& backend, const at::Tensor& A, const at::Tensor& b,
    bool lower_triangular, const std::optional<at::Tensor>& v0,
    const std::optional<at::Tensor>& p0, ManifoldState* state) {
  std::optional<at::Tensor> h0;
  if (v0) h0 = torch::stack({*v0, *p0}, -1);
  auto [h, h_last] = backend.block_scan(A, b, h0, lower_triangular);
  if (state) *state = ManifoldState{h_last.select(-1, 0), h_last.select(-1, 1)};
  return {h.select(-1, 0), h.select(-1, 1)};
}

at::Tensor ManifoldScanImpl::forward(const at::Tensor& x, const SequenceBackend& backend,
                                     ManifoldState* state, at::Tensor* energy_drift,
                                     const Documents& documents) {
  TORCH_CHECK(x.dim() == 3 && x.size(2) == options_.d_model,
              "ManifoldScan: x must be (batch, time, ", options_.d_model, "), got ", x.sizes());
  TORCH_CHECK(!documents || (!state && !energy_drift),
              "ManifoldScan: documents (packed sequences) cannot be combined with a state or the "
              "energy-drift term");
  auto force = force_norm_->forward(x);
  auto [a, drive, dt] = coefficients(force);
  std::optional<at::Tensor> v0, p0;
  if (state && state->velocity.defined()) v0 = state->velocity, p0 = state->position;
  at::Tensor velocity, position;
  if (options_.second_order || options_.linoss) {
    TORCH_CHECK(!documents, "ManifoldScan: ", options_.linoss ? "linoss" : "second_order",
                " cannot be combined with documents (packed sequences): the block scan has no "
                "cu_seqlens");
    at::Tensor A, b;
    if (options_.linoss) {
      // v_t = (v_{t-1} - dt w p_{t-1} + drive) / s, p_t = (dt v_{t-1} + p_{t-1} + dt drive) / s.
      const auto w = stiffness();
      const auto inv_s = 1 / (1 + dt * dt * w);
      A = blocks(inv_s, -dt * w * inv_s, dt * inv_s, inv_s);
      b = torch::stack({drive * inv_s, dt * drive * inv_s}, -1);
    } else {
      // v_t = a v_{t-1} + drive and p_t = p_{t-1} + dt v_t = dt a v_{t-1} + p_{t-1} + dt drive.
      // A[..., 0, 1] is never read (lower_triangular); zeros keep the tensor whole.
      A = blocks(a, torch::zeros_like(a), dt * a, torch::ones_like(a));
      b = torch::stack({drive, dt * drive}, -1);
    }
    std::tie(velocity, position) =
        integrate_block(backend, A, b, /*lower_triangular=*/!options_.linoss, v0, p0, state);
  } else {
    at::Tensor v_last, p_last;
    std::tie(velocity, v_last) = backend.scan(a, drive, v0, documents);
    auto increment = dt * velocity;
    // a = 1 for the position scan; a stride-0 view, never materialised.
    auto ones = torch::ones({1, 1, 1}, increment.options()).expand(increment.sizes());
    std::tie(position, p_last) = backend.scan(ones, increment, p0, documents);
    if (state) *state = ManifoldState{v_last, p_last};
  }

  if (energy_drift) {
    auto v_real = velocity.is_complex() ? torch::view_as_real(velocity).flatten(-2) : velocity;
    auto energy = 0.5 * v_real.pow(2).sum(-1);  // (batch, time)
    const int64_t T = energy.size(1);
    auto drift = T > 1 ? (energy.slice(1, 1) - energy.slice(1, 0, T - 1)).abs().sum()
                       : torch::zeros({}, energy.options());
    // The term at a slice boundary needs E of the token before the slice. It is carried in by
    // the backend's own differentiable scan, so its gradient reaches the rank that owns that
    // token: one leading step with a = 1, b = 0 passes the entering state through, then
    // a = 0, b = (E_t, 1) make the state after each token (E_t, 1). The state entering the
    // first slice is h0 = 0, so there (and on one rank) the flag is 0 and the term vanishes;
    // an empty slice's single leading step passes the state on. Collective: every rank calls.
    auto carried_values = torch::stack({energy, torch::ones_like(energy)}, -1);  // (B, T, 2)
    auto a_carry = torch::cat({torch::ones({energy.size(0), 1, 2}, energy.options()),
                               torch::zeros({energy.size(0), T, 2}, energy.options())}, 1);
    auto b_carry = torch::cat(
        {torch::zeros({energy.size(0), 1, 2}, energy.options()), carried_values}, 1);
    auto entering =
        std::get<0>(backend.scan(a_carry, b_carry, std::nullopt, std::nullopt)).select(1, 0);
    if (T > 0)
      drift = drift +
              (entering.select(-1, 1) * (energy.select(1, 0) - entering.select(-1, 0)).abs()).sum();
    *energy_drift = energy_drift->defined() ? *energy_drift + drift : drift;
  }
  return readout(x, position, velocity);
}

at::Tensor ManifoldScanImpl::step(const at::Tensor& x, ManifoldState& state) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == options_.d_model,
              "ManifoldScan::step: x must be (batch, ", options_.d_model, "), got ", x.sizes());
  auto [a, drive, dt] = coefficients(force_norm_->forward(x));
  at::Tensor velocity, position;
  if (options_.linoss) {
    // The implicit step as written: the position first, then the velocity from it.
    auto v = state.velocity.defined() ? state.velocity : torch::zeros_like(drive);
    auto p = state.position.defined() ? state.position : torch::zeros_like(drive);
    const auto w = stiffness();
    position = (p + dt * v + dt * drive) / (1 + dt * dt * w);
    velocity = v - dt * w * position + drive;
  } else {
    velocity = state.velocity.defined() ? a * state.velocity + drive : drive;
    position = (state.position.defined() ? state.position : torch::zeros_like(velocity)) +
               dt * velocity;
  }
  state = ManifoldState{velocity, position};
  return readout(x, position, velocity);
}

}  // namespace seqpar::models
