// ManifoldScan / ByteLM without any communication: the streaming path (step, plain
// elementwise recurrences) against the parallel path (seqpar::scan), chunked state carry,
// and the energy-drift term against a direct computation from the streamed velocities.
#include <seqpar/models/byte_lm.h>

#include <gtest/gtest.h>

#include <map>

using namespace seqpar::models;

namespace {

ByteLMOptions tiny(bool rotation) {
  ByteLMOptions o;
  o.layers = 2;
  o.block.d_model = 32;
  o.block.heads = 4;
  o.block.mlp_hidden = 64;
  o.block.rotation = rotation;
  return o;
}

double max_abs(const at::Tensor& t) { return t.abs().max().item<double>(); }

// The streaming path (step, one token at a time) against the parallel forward on the same
// tokens: logits within 1e-4 of their scale, and the same greedy continuation.
void expect_streaming_equals_parallel(ByteLM& model, const at::Tensor& tokens, const char* what) {
  torch::NoGradGuard no_grad;
  auto parallel = model->forward(tokens, local_backend());
  std::vector<LayerState> states;
  std::vector<at::Tensor> streamed;
  for (int64_t t = 0; t < tokens.size(1); ++t)
    streamed.push_back(model->step(tokens.select(1, t), states));
  auto sequential = torch::stack(streamed, 1);
  const double err = max_abs(parallel - sequential), scale = max_abs(parallel);
  std::printf("%s: max |parallel - streamed| = %.3g (logit scale %.3g)\n", what, err, scale);
  EXPECT_LT(err, 1e-4 * std::max(1.0, scale)) << what;
  EXPECT_TRUE(torch::equal(parallel.argmax(-1), sequential.argmax(-1))) << what;
}

// Two forward calls that continue each other through the layer states equal one call over the
// whole sequence; returns the states after both.
std::vector<LayerState> expect_chunked_forward_carries_state(ByteLM& model, const at::Tensor& tokens,
                                                             int64_t split) {
  torch::NoGradGuard no_grad;
  auto whole = model->forward(tokens, local_backend());
  std::vector<LayerState> states;
  auto first = model->forward(tokens.slice(1, 0, split), local_backend(), &states);
  auto second = model->forward(tokens.slice(1, split), local_backend(), &states);
  EXPECT_LT(max_abs(whole - torch::cat({first, second}, 1)), 1e-4);
  return states;
}

void expect_every_parameter_gets_a_gradient(ByteLM& model, const at::Tensor& tokens) {
  model->forward(tokens, local_backend()).logsumexp(-1).sum().backward();
  for (const auto& p : model->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_GT(max_abs(p.value().grad()), 0.0) << p.key();
  }
}

class ModelTest : public testing::TestWithParam<bool> {};

TEST_P(ModelTest, StreamingLogitsEqualParallelForward) {
  torch::manual_seed(7);
  ByteLM model(tiny(GetParam()));
  expect_streaming_equals_parallel(model, torch::randint(0, 256, {2, 96}, torch::kInt64),
                                   GetParam() ? "rotation" : "real");
}

TEST_P(ModelTest, ChunkedForwardCarriesState) {
  torch::manual_seed(8);
  ByteLM model(tiny(GetParam()));
  torch::NoGradGuard no_grad;
  auto tokens = torch::randint(0, 256, {1, 80}, torch::kInt64);
  auto whole = model->forward(tokens, local_backend());
  std::vector<LayerState> states;
  auto first = model->forward(tokens.slice(1, 0, 33), local_backend(), &states);
  auto second = model->forward(tokens.slice(1, 33), local_backend(), &states);
  EXPECT_LT(max_abs(whole - torch::cat({first, second}, 1)), 1e-4);
}

// Matrix-state blocks (gla, gated_deltanet, "+conv": with a short convolution of 4 tokens,
// "+qknorm": q and k L2-normalised):
// the streaming step (the per-step recurrence and the convolution written out) against the
// chunked parallel forward, state carry across calls, and gradients.
ByteLMOptions tiny_matrix(const std::string& name) {
  ByteLMOptions o;
  o.layers = 2;
  o.kind = seqpar::models::parse_model_kind(name.substr(0, name.find('+')));
  o.matrix_block.conv_size = name.find("+conv") == std::string::npos ? 0 : 4;
  o.matrix_block.qk_l2norm = name.find("+qknorm") != std::string::npos;
  o.matrix_block.d_model = 32;
  o.matrix_block.heads = 4;
  o.matrix_block.mlp_hidden = 64;
  o.matrix_block.chunk_size = 16;
  return o;
}

class MatrixModelTest : public testing::TestWithParam<std::string> {};

TEST_P(MatrixModelTest, StreamingLogitsEqualParallelForward) {
  torch::manual_seed(17);
  ByteLM model(tiny_matrix(GetParam()));
  expect_streaming_equals_parallel(model, torch::randint(0, 256, {2, 75}, torch::kInt64),
                                   GetParam().c_str());
}

TEST_P(MatrixModelTest, ChunkedForwardCarriesStateAndGradientsFlow) {
  torch::manual_seed(18);
  ByteLM model(tiny_matrix(GetParam()));
  auto tokens = torch::randint(0, 256, {1, 70}, torch::kInt64);
  expect_chunked_forward_carries_state(model, tokens, 29);
  // A first piece shorter than the convolution's window.
  expect_chunked_forward_carries_state(model, tokens, 2);
  expect_every_parameter_gets_a_gradient(model, tokens);
}

// qk_l2norm: the recurrence gets unit q and k per head in both variants; without it GLA's q
// and k and gated DeltaNet's q keep their projected lengths (gated DeltaNet's k is unit).
TEST(MatrixModel, QkL2NormGivesUnitQueriesAndKeys) {
  for (const std::string variant : {"gla", "gated_deltanet"}) {
    for (const bool norm : {false, true}) {
      torch::manual_seed(21);
      seqpar::models::MatrixStateBlockOptions o;
      o.variant = seqpar::models::parse_model_kind(variant);
      o.d_model = 32;
      o.heads = 4;
      o.qk_l2norm = norm;
      seqpar::models::MatrixStateBlock block(o);
      const auto qkv = 3.0 * torch::randn({2, 9, 3 * o.d_model});
      auto [q, k, v, g, beta] = block->project(torch::randn({2, 9, o.d_model}), qkv);
      const auto unit = [](const at::Tensor& t) {
        return (t.pow(2).sum(-1) - 1).abs().max().item<double>() < 1e-5;
      };
      EXPECT_EQ(unit(q), norm) << variant;
      EXPECT_EQ(unit(k), norm || variant == "gated_deltanet") << variant;
      EXPECT_FALSE(unit(v)) << variant;
    }
  }
}

// recompute_slice_tokens: the recurrence over recomputed slices (here 32 tokens, two chunks;
// 75 tokens leave a partial last slice) gives the logits, the final states and every
// parameter's gradient of one call, also when a state enters; asked of a sequence-parallel
// backend, it is refused with a message that names the option.
TEST_P(MatrixModelTest, RecomputedSlicesEqualOneCall) {
  auto tokens = torch::randint(0, 256, {2, 75}, torch::kInt64);
  std::map<std::string, at::Tensor> grads[2];
  at::Tensor logits[2], last[2];
  for (int sliced = 0; sliced < 2; ++sliced) {
    torch::manual_seed(23);
    ByteLMOptions o = tiny_matrix(GetParam());
    o.matrix_block.recompute_slice_tokens = sliced ? 20 : 0;  // rounded up to 32
    ByteLM model(o);
    std::vector<LayerState> states;
    {
      torch::NoGradGuard no_grad;
      model->forward(tokens.slice(1, 0, 9), local_backend(), &states);  // a state to enter with
    }
    logits[sliced] = model->forward(tokens, local_backend(), &states);
    logits[sliced].logsumexp(-1).sum().backward();
    last[sliced] = states[0].matrix.S.detach();
    for (const auto& p : model->named_parameters()) grads[sliced][p.key()] = p.value().grad();
  }
  // float32, and the slices compose the chunk states in another order than one call: measured
  // relative differences were up to 4.5e-7 (logits), 1.6e-7 (final states) and 2.9e-6
  // (gradients) over the six variants; 1e-4 leaves 30x room, and a slice that lost the state
  // carry is off by O(1).
  EXPECT_LT(max_abs(logits[1] - logits[0]), 1e-4 * max_abs(logits[0]));
  EXPECT_LT(max_abs(last[1] - last[0]), 1e-4 * max_abs(last[0]));
  for (const auto& [name, g] : grads[0]) {
    ASSERT_TRUE(grads[1][name].defined()) << name;
    EXPECT_LT(max_abs(grads[1][name] - g), 1e-4 * max_abs(g) + 1e-7) << name;
  }

  ByteLMOptions o = tiny_matrix(GetParam());
  o.matrix_block.recompute_slice_tokens = 32;
  ByteLM model(o);
  SequenceBackend sp = local_backend();
  sp.sequence_parallel = true;
  try {
    model->forward(tokens, sp);
    ADD_FAILURE() << "a sequence-parallel backend was accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("recompute_slice_tokens"), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Blocks, MatrixModelTest,
                         testing::Values("gla", "gated_deltanet", "gla+conv",
                                         "gated_deltanet+conv", "gla+qknorm",
                                         "gated_deltanet+conv+qknorm"));

// PSM blocks: the streaming step (binary counter of chunk states) against the parallel
// forward (static Blelloch scan), with a length that is not a whole number of chunks; calls
// that continue each other; gradients reach every parameter.
ByteLMOptions tiny_psm() {
  ByteLMOptions o;
  o.layers = 2;
  o.kind = seqpar::models::ModelKind::kPsm;
  o.psm_block.d_model = 32;
  o.psm_block.heads = 4;
  o.psm_block.mlp_hidden = 64;
  o.psm_block.chunk_size = 4;
  return o;
}

TEST(PsmModelTest, StreamingLogitsEqualParallelForward) {
  torch::manual_seed(27);
  ByteLM model(tiny_psm());
  expect_streaming_equals_parallel(model, torch::randint(0, 256, {2, 75}, torch::kInt64), "psm");
}

TEST(PsmModelTest, ChunkedForwardCarriesStateAndGradientsFlow) {
  torch::manual_seed(28);
  ByteLM model(tiny_psm());
  auto tokens = torch::randint(0, 256, {1, 70}, torch::kInt64);
  const auto states = expect_chunked_forward_carries_state(model, tokens, 29);
  EXPECT_EQ(states[0].psm.counter->chunks(), 70 / 4);
  EXPECT_EQ(states[0].psm.counter->roots(), 2);  // 17 chunks = 10001b: one root per set bit
  expect_every_parameter_gets_a_gradient(model, tokens);
}

// Recomputing Agg and Inf in backward (seqpar/models/recompute.h), Inf in slices of 3 chunks,
// gives the gradients that keeping their activations gives, for every parameter (float64, so
// only rounding differs).
TEST(PsmModelTest, RecomputedBackwardEqualsKeptActivations) {
  auto tokens = torch::randint(0, 256, {2, 37}, torch::kInt64);  // 10 chunks, the last partial
  std::map<std::string, at::Tensor> grads[2];
  at::Tensor losses[2];
  for (int recompute = 0; recompute < 2; ++recompute) {
    torch::manual_seed(31);
    ByteLMOptions o = tiny_psm();
    o.psm_block.recompute = recompute == 1;
    o.psm_block.recompute_slice_tokens = 12;  // 20 chunks of 4 in 7 slices
    ByteLM model(o);
    model->to(torch::kDouble);
    losses[recompute] = model->forward(tokens, local_backend()).logsumexp(-1).sum();
    losses[recompute].backward();
    for (const auto& p : model->named_parameters()) {
      ASSERT_TRUE(p.value().grad().defined()) << p.key() << " recompute=" << recompute;
      grads[recompute][p.key()] = p.value().grad().clone();
    }
  }
  EXPECT_NEAR(losses[0].item<double>(), losses[1].item<double>(), 1e-9);
  ASSERT_EQ(grads[0].size(), grads[1].size());
  for (const auto& [name, g] : grads[0]) {
    const double err = max_abs(g - grads[1].at(name)), scale = std::max(1.0, max_abs(g));
    EXPECT_LT(err, 1e-10 * scale) << name;
  }
}

TEST(ModelTest, EnergyDriftMatchesStreamedVelocities) {
  torch::manual_seed(9);
  ManifoldScanOptions o;
  o.d_model = 16, o.heads = 2, o.mlp_hidden = 32;
  ManifoldScan layer(o);
  torch::NoGradGuard no_grad;
  auto x = torch::randn({2, 40, 16});
  at::Tensor drift;
  layer->forward(x, local_backend(), nullptr, &drift);
  ManifoldState state;
  std::vector<at::Tensor> energy;
  for (int64_t t = 0; t < x.size(1); ++t) {
    layer->step(x.select(1, t), state);
    energy.push_back(0.5 * state.velocity.pow(2).sum(-1));
  }
  auto e = torch::stack(energy, 1).to(torch::kFloat64);
  const double expected = (e.slice(1, 1) - e.slice(1, 0, -1)).abs().sum().item<double>();
  EXPECT_NEAR(drift.item<double>(), expected, 1e-4 * std::max(1.0, expected));
}

TEST(ModelTest, GradientsReachEveryParameter) {
  torch::manual_seed(10);
  auto options = tiny(true);
  ByteLM model(options);
  auto tokens = torch::randint(0, 256, {1, 50}, torch::kInt64);
  at::Tensor drift;
  auto logits = model->forward(tokens, local_backend(), nullptr, &drift);
  (logits.logsumexp(-1).mean() + 0.1 * drift).backward();
  for (const auto& p : model->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0) << p.key();
    EXPECT_TRUE(torch::isfinite(p.value().grad()).all().item<bool>()) << p.key();
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, ModelTest, testing::Values(false, true),
                         [](const auto& info) { return info.param ? "rotation" : "real"; });

}  // namespace
