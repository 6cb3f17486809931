// The linoss model (ManifoldScan's LinOSS-IM oscillator in one general 2x2 block scan per
// layer) against the oscillator stepped token by token as written in its implicit form
// (ManifoldScan::step: the position first, then the velocity from it), which never forms the
// 2x2 matrix: outputs, carried state and the gradients with respect to the input, the initial
// state and every parameter, in float64; the byte model's streaming path; and the
// combinations it refuses, by name.
#include <seqpar/models/byte_lm.h>

#include <gtest/gtest.h>

#include <map>
#include <string>

#include "model_checks.h"

using namespace seqpar::models;
using model_checks::error_of;
using model_checks::expect_close;
using model_checks::max_abs;

namespace {

ManifoldScanOptions layer_options() {
  ManifoldScanOptions o;
  o.d_model = 16, o.heads = 2, o.mlp_hidden = 32;
  o.linoss = true;
  // Stiff channels (w up to 30) with dt up to 2: strong damping and fast rotation in the same
  // layer, beside nearly undamped slow channels.
  o.stiffness_min = 1e-3, o.stiffness_max = 30.0;
  o.dt_max = 2.0;
  return o;
}

struct Result {
  at::Tensor y, velocity, position;
  std::map<std::string, at::Tensor> grads;  // inputs and parameters
};

// One layer over x from (v0, p0): in parallel (one block scan) or token by token (step()).
Result run_layer(ManifoldScan& layer, const at::Tensor& x, const at::Tensor& v0,
                 const at::Tensor& p0, bool stepped) {
  layer->zero_grad();
  auto xi = x.clone().requires_grad_(), vi = v0.clone().requires_grad_(),
       pi = p0.clone().requires_grad_();
  ManifoldState state{vi, pi};
  at::Tensor y;
  if (stepped) {
    std::vector<at::Tensor> ys;
    for (int64_t t = 0; t < x.size(1); ++t) ys.push_back(layer->step(xi.select(1, t), state));
    y = torch::stack(ys, 1);
  } else {
    y = layer->forward(xi, local_backend(), &state);
  }
  (y.pow(2).mean() + state.velocity.sum() + 0.5 * state.position.pow(2).sum()).backward();
  Result r{y.detach(), state.velocity.detach(), state.position.detach(), {}};
  r.grads["x"] = xi.grad();
  r.grads["v0"] = vi.grad();
  r.grads["p0"] = pi.grad();
  for (const auto& p : layer->named_parameters()) r.grads[p.key()] = p.value().grad().clone();
  return r;
}

TEST(Linoss, BlockScanEqualsTheImplicitStepInFloat64) {
  torch::manual_seed(31);
  ManifoldScan layer(layer_options());
  layer->to(torch::kFloat64);
  EXPECT_EQ(layer->named_parameters().find("w_a"), nullptr) << "no retention in linoss mode";
  ASSERT_NE(layer->named_parameters().find("stiffness_raw"), nullptr);
  for (int64_t T : {1, 2, 57}) {
    auto x = torch::randn({3, T, 16}, torch::kFloat64);
    auto v0 = torch::randn({3, 16}, torch::kFloat64), p0 = torch::randn({3, 16}, torch::kFloat64);
    auto parallel = run_layer(layer, x, v0, p0, false);
    auto stepped = run_layer(layer, x, v0, p0, true);
    const std::string at = " (T = " + std::to_string(T) + ")";
    expect_close(stepped.y, parallel.y, 1e-12, "output" + at);
    expect_close(stepped.velocity, parallel.velocity, 1e-12, "final velocity" + at);
    expect_close(stepped.position, parallel.position, 1e-12, "final position" + at);
    for (const auto& [name, g] : stepped.grads) {
      ASSERT_TRUE(parallel.grads.at(name).defined()) << name;
      expect_close(g, parallel.grads.at(name), 1e-11, "d/d" + name + at);
    }
  }
}

// The block the layer builds is a general one (the (0, 1) entry -dt w / s is read): the
// backend is asked for lower_triangular = false, once per layer call.
TEST(Linoss, RunsOneGeneralBlockScan) {
  torch::manual_seed(32);
  ManifoldScan layer(layer_options());
  model_checks::CountingBackend counting;
  counting.on_block_scan = [](const at::Tensor& A, bool lower_triangular) {
    EXPECT_FALSE(lower_triangular);
    EXPECT_GT(max_abs(A.select(-2, 0).select(-1, 1)), 0.0);
  };
  layer->forward(torch::randn({2, 9, 16}), counting.backend());
  EXPECT_EQ(counting.scans, 0);
  EXPECT_EQ(counting.block_scans, 1);
}

// The damping of the implicit step: with no input the state's energy w p^2 + v^2 never grows.
TEST(Linoss, FreeOscillationDoesNotGrow) {
  torch::manual_seed(33);
  ManifoldScan layer(layer_options());
  torch::NoGradGuard no_grad;
  for (auto& p : layer->named_parameters())
    if (p.key().rfind("w_b", 0) == 0) p.value().zero_();  // no drive
  ManifoldState state{torch::randn({1, 16}), torch::randn({1, 16})};
  auto w = torch::softplus(layer->named_parameters()["stiffness_raw"]);
  auto energy = [&] { return (w * state.position.pow(2) + state.velocity.pow(2)).sum(); };
  double before = energy().item<double>();
  layer->forward(torch::randn({1, 200, 16}), local_backend(), &state);
  EXPECT_LE(energy().item<double>(), before * (1 + 1e-5));
}

TEST(Linoss, ByteModelStreamsLikeItsParallelForward) {
  torch::manual_seed(34);
  ByteLMOptions o;
  o.layers = 2;
  o.kind = ModelKind::kLinoss;
  o.block.d_model = 32, o.block.heads = 4, o.block.mlp_hidden = 64;
  ByteLM model(o);
  torch::NoGradGuard no_grad;
  auto tokens = torch::randint(0, 256, {2, 23}, torch::kInt64);
  auto parallel = model->forward(tokens, local_backend());
  std::vector<LayerState> states;
  std::vector<at::Tensor> steps;
  for (int64_t t = 0; t < tokens.size(1); ++t) steps.push_back(model->step(tokens.select(1, t), states));
  expect_close(parallel, torch::stack(steps, 1), 2e-5, "logits");
  EXPECT_EQ(model_kind_name(ModelKind::kLinoss), std::string("linoss"));
  EXPECT_EQ(parse_model_kind("linoss"), ModelKind::kLinoss);
}

TEST(Linoss, RefusesRotationSecondOrderAndDocuments) {
  for (int which = 0; which < 2; ++which) {
    auto o = layer_options();
    (which == 0 ? o.rotation : o.second_order) = true;
    const auto msg = error_of([&] { ManifoldScan layer(o); });
    EXPECT_NE(msg.find("linoss"), std::string::npos) << msg;
  }
  ManifoldScan layer(layer_options());
  const auto msg = error_of([&] {
    layer->forward(torch::randn({1, 12, 16}), local_backend(), nullptr, nullptr,
                   torch::tensor({0, 5, 12}, torch::kInt64));
  });
  EXPECT_NE(msg.find("linoss"), std::string::npos) << msg;
  EXPECT_NE(msg.find("documents"), std::string::npos) << msg;
}

}  // namespace
