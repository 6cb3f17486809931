// ByteLM on packed documents (seqpar-train --pack_documents): the forward with document
// starts (cu_seqlens) against each document run alone from a zero state, an independent
// computation that never sees cu_seqlens. Logits and the gradient of every parameter, for each
// model family that packs (manifold, gla, gated_deltanet, the latter with short convolutions
// of width 1 and 4 whose windows must not reach across a start), on documents that are empty,
// shorter than a chunk and span several chunks. Then the refusals (psm, a state) name what.
#include <seqpar/models/byte_lm.h>

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "model_checks.h"

using namespace seqpar::models;

namespace {

ByteLMOptions packed_model(const std::string& name) {
  ByteLMOptions o;
  o.layers = 2;
  const auto plus = name.find('+');
  o.kind = parse_model_kind(name.substr(0, plus));
  o.block.d_model = o.matrix_block.d_model = 32;
  o.block.heads = o.matrix_block.heads = 4;
  o.block.mlp_hidden = o.matrix_block.mlp_hidden = 64;
  o.block.rotation = name.find("+rotation") != std::string::npos;
  o.matrix_block.chunk_size = 16;
  if (name.find("+conv1") != std::string::npos) o.matrix_block.conv_size = 1;
  if (name.find("+conv4") != std::string::npos) o.matrix_block.conv_size = 4;
  return o;
}

// Empty documents first, in the middle and last; lengths 1 to 40 against chunks of 16.
const std::vector<int64_t> kStarts = {0, 0, 1, 4, 21, 61, 61, 84, 84};

class PackedDocuments : public testing::TestWithParam<std::string> {};

TEST_P(PackedDocuments, EqualEachDocumentAlone) {
  torch::manual_seed(41);
  ByteLM model(packed_model(GetParam()));
  const int64_t T = kStarts.back();
  const auto tokens = torch::randint(0, 256, {1, T}, torch::kInt64);
  const auto weights = torch::randn({1, T, ByteLMOptions::kVocab});
  const auto cu = torch::tensor(kStarts, torch::kInt64);

  const auto packed = model->forward(tokens, local_backend(), nullptr, nullptr, cu);
  (packed * weights).sum().backward();
  std::map<std::string, at::Tensor> packed_grads;
  for (auto& p : model->named_parameters()) {
    packed_grads[p.key()] = p.value().grad().clone();
    p.value().mutable_grad() = at::Tensor();
  }

  std::vector<at::Tensor> alone;
  for (size_t n = 0; n + 1 < kStarts.size(); ++n) {
    const int64_t s = kStarts[n], len = kStarts[n + 1] - s;
    if (len == 0) continue;
    const auto logits = model->forward(tokens.narrow(1, s, len), local_backend());
    (logits * weights.narrow(1, s, len)).sum().backward();
    alone.push_back(logits);
  }
  const auto reference = torch::cat(alone, 1);
  const double scale = reference.abs().max().item<double>();
  EXPECT_LE((packed - reference).abs().max().item<double>(), 1e-5 * scale) << "logits";
  for (auto& p : model->named_parameters()) {
    const at::Tensor& g = p.value().grad();
    ASSERT_TRUE(g.defined()) << p.key();
    const double g_scale = g.abs().max().item<double>();
    EXPECT_LE((packed_grads[p.key()] - g).abs().max().item<double>(), 1e-4 * g_scale + 1e-6)
        << p.key() << " (scale " << g_scale << ")";
  }
}

INSTANTIATE_TEST_SUITE_P(Models, PackedDocuments,
                         testing::Values("manifold", "manifold+rotation", "gla", "gla+conv4",
                                         "gated_deltanet", "gated_deltanet+conv1",
                                         "gated_deltanet+conv4"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s) if (c == '+') c = '_';
                           return s;
                         });

using model_checks::error_of;

TEST(PackedDocumentsRefused, PsmAndStatesSayWhy) {
  const auto tokens = torch::randint(0, 256, {1, 12}, torch::kInt64);
  const auto cu = torch::tensor(std::vector<int64_t>{0, 5, 12}, torch::kInt64);
  ByteLMOptions psm;
  psm.kind = ModelKind::kPsm;
  psm.psm_block.d_model = 16;
  psm.psm_block.heads = 2;
  psm.psm_block.mlp_hidden = 32;
  psm.psm_block.chunk_size = 4;
  ByteLM psm_model(psm);
  auto msg = error_of([&] { psm_model->forward(tokens, local_backend(), nullptr, nullptr, cu); });
  EXPECT_NE(msg.find("psm"), std::string::npos) << msg;

  for (const std::string name : {"manifold", "gated_deltanet+conv4"}) {
    ByteLM model(packed_model(name));
    std::vector<LayerState> states;
    msg = error_of([&] { model->forward(tokens, local_backend(), &states, nullptr, cu); });
    EXPECT_NE(msg.find("documents"), std::string::npos) << name << ": " << msg;
    // A batch of two rows with one set of starts: the op names cu_seqlens' batch rule.
    msg = error_of([&] {
      model->forward(tokens.expand({2, 12}), local_backend(), nullptr, nullptr, cu);
    });
    EXPECT_NE(msg.find("batch"), std::string::npos) << name << ": " << msg;
  }
}

}  // namespace
