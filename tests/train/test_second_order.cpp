// The manifold model's second_order mode (velocity and position in one 2x2 block scan) is the
// two-scan model written differently: with the same parameters, the same logits, state and
// every parameter gradient to rounding, on one rank. And the combinations the block scan
// cannot do are refused with an error naming second_order.
#include <seqpar/models/byte_lm.h>

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <utility>

#include "model_checks.h"

using namespace seqpar::models;
using model_checks::error_of;
using model_checks::expect_close;

namespace {

ByteLMOptions tiny(bool second_order) {
  ByteLMOptions o;
  o.layers = 2;
  o.block.d_model = 32;
  o.block.heads = 4;
  o.block.mlp_hidden = 64;
  o.block.second_order = second_order;
  return o;
}

// Logits of both calls and the gradients of a loss over them (energy drift included); when
// split > 0 the tokens go in two calls with the state carried across.
struct Run {
  at::Tensor logits;
  std::map<std::string, at::Tensor> grads;
};

Run run(ByteLM& model, const at::Tensor& tokens, int64_t split) {
  model->zero_grad();
  at::Tensor drift;
  at::Tensor logits;
  if (split > 0) {
    std::vector<LayerState> states;
    auto first = model->forward(tokens.slice(1, 0, split), local_backend(), &states, &drift);
    auto second = model->forward(tokens.slice(1, split), local_backend(), &states, &drift);
    logits = torch::cat({first, second}, 1);
  } else {
    logits = model->forward(tokens, local_backend(), nullptr, &drift);
  }
  (logits.logsumexp(-1).mean() + 0.1 * drift).backward();
  Run r{logits.detach(), {}};
  for (const auto& p : model->named_parameters()) r.grads[p.key()] = p.value().grad().clone();
  return r;
}

struct Shape {
  int64_t batch, time, split;  // split > 0: two calls, the state carried across
};

class SecondOrderTest : public testing::TestWithParam<Shape> {};

TEST_P(SecondOrderTest, LogitsAndGradientsEqualTheTwoScanModel) {
  const auto shape = GetParam();
  torch::manual_seed(21);
  ByteLM two_scans(tiny(false));
  ByteLM one_scan(tiny(true));
  {
    torch::NoGradGuard no_grad;
    auto source = two_scans->named_parameters();
    for (auto& p : one_scan->named_parameters()) p.value().copy_(source[p.key()]);
  }
  auto tokens = torch::randint(0, 256, {shape.batch, shape.time}, torch::kInt64);
  auto expected = run(two_scans, tokens, shape.split);
  auto got = run(one_scan, tokens, shape.split);
  expect_close(expected.logits, got.logits, 1e-5, "logits");
  for (const auto& [name, g] : expected.grads) {
    ASSERT_TRUE(got.grads.at(name).defined()) << name;
    expect_close(g, got.grads.at(name), 1e-5, name);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, SecondOrderTest,
                         testing::Values(Shape{1, 1, 0}, Shape{2, 37, 0}, Shape{3, 64, 0},
                                         Shape{2, 40, 17}, Shape{1, 2, 1}),
                         [](const auto& info) {
                           const auto& s = info.param;
                           return "b" + std::to_string(s.batch) + "_t" +
                                  std::to_string(s.time) +
                                  (s.split > 0 ? "_state_at_" + std::to_string(s.split) : "");
                         });

// One layer in float64: velocity, position and the carried state agree to ~1e-12, and so do
// the gradients with respect to the input and the initial state.
TEST(SecondOrder, Float64LayerAndStateEqualTheTwoScanModel) {
  torch::manual_seed(22);
  ManifoldScanOptions o;
  o.d_model = 16, o.heads = 2, o.mlp_hidden = 32;
  ManifoldScan two_scans(o);
  o.second_order = true;
  ManifoldScan one_scan(o);
  {
    torch::NoGradGuard no_grad;
    auto source = two_scans->named_parameters();
    for (auto& p : one_scan->named_parameters()) p.value().copy_(source[p.key()]);
  }
  two_scans->to(torch::kFloat64);
  one_scan->to(torch::kFloat64);
  auto x = torch::randn({2, 23, 16}, torch::kFloat64);
  auto v0 = torch::randn({2, 16}, torch::kFloat64), p0 = torch::randn({2, 16}, torch::kFloat64);
  // The backend counts its calls: the second-order layer runs one block scan (and the
  // energy-drift term's carry scan), the two-scan layer no block scan.
  model_checks::CountingBackend counting;
  counting.on_block_scan = [](const at::Tensor&, bool lower_triangular) {
    EXPECT_TRUE(lower_triangular);
  };
  const auto counted = counting.backend();
  std::vector<std::pair<int, int>> calls;
  std::vector<at::Tensor> outputs, states, x_grads, v0_grads, p0_grads;
  for (auto* layer : {&two_scans, &one_scan}) {
    auto xi = x.clone().requires_grad_(), vi = v0.clone().requires_grad_(),
         pi = p0.clone().requires_grad_();
    ManifoldState state{vi, pi};
    at::Tensor drift;
    counting.scans = counting.block_scans = 0;
    auto y = (*layer)->forward(xi, counted, &state, &drift);
    calls.emplace_back(counting.scans, counting.block_scans);
    (y.pow(2).mean() + state.velocity.sum() + 0.5 * state.position.sum() + 0.1 * drift)
        .backward();
    outputs.push_back(y.detach());
    states.push_back(torch::stack({state.velocity, state.position}).detach());
    x_grads.push_back(xi.grad());
    v0_grads.push_back(vi.grad());
    p0_grads.push_back(pi.grad());
  }
  EXPECT_EQ(calls[0], std::make_pair(3, 0)) << "two scans and the energy carry";
  EXPECT_EQ(calls[1], std::make_pair(1, 1)) << "one block scan and the energy carry";
  expect_close(outputs[0], outputs[1], 1e-12, "output");
  expect_close(states[0], states[1], 1e-12, "final state");
  expect_close(x_grads[0], x_grads[1], 1e-12, "d/dx");
  expect_close(v0_grads[0], v0_grads[1], 1e-12, "d/dv0");
  expect_close(p0_grads[0], p0_grads[1], 1e-12, "d/dp0");
}

TEST(SecondOrder, RefusesRotationAndDocuments) {
  ManifoldScanOptions o;
  o.d_model = 16, o.heads = 2, o.mlp_hidden = 32;
  o.second_order = true;
  o.rotation = true;
  auto msg = error_of([&] { ManifoldScan layer(o); });
  EXPECT_NE(msg.find("second_order"), std::string::npos) << msg;
  EXPECT_NE(msg.find("rotation"), std::string::npos) << msg;

  o.rotation = false;
  ManifoldScan layer(o);
  auto documents = torch::tensor({0, 5, 12}, torch::kInt64);
  msg = error_of([&] { layer->forward(torch::randn({1, 12, 16}), local_backend(), nullptr,
                                      nullptr, documents); });
  EXPECT_NE(msg.find("second_order"), std::string::npos) << msg;
  EXPECT_NE(msg.find("documents"), std::string::npos) << msg;
}

}  // namespace
