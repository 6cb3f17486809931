// ByteLM: embedding -> ManifoldScan blocks -> norm -> head (seqpar/models/byte_lm.h).
#include "seqpar/models/byte_lm.h"

namespace seqpar::models {

ByteLMImpl::ByteLMImpl(const ByteLMOptions& options) : options_(options) {
  TORCH_CHECK(options.layers > 0, "ByteLM: layers must be positive, got ", options.layers);
  const int64_t D = options.block.d_model;
  embed_ = register_module("embed", torch::nn::Embedding(ByteLMOptions::kVocab, D));
  blocks_ = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < options.layers; ++i) {
    block_refs_.push_back(ManifoldScan(options.block));
    blocks_->push_back(block_refs_.back());
  }
  final_norm_ = register_module("final_norm", RMSNorm(D));
  head_ = register_module("head", torch::nn::Linear(D, ByteLMOptions::kVocab));
}

at::Tensor ByteLMImpl::forward(const at::Tensor& tokens, const SequenceBackend& backend,
                               std::vector<ManifoldState>* states, at::Tensor* energy_drift) {
  TORCH_CHECK(tokens.dim() == 2, "ByteLM: tokens must be (batch, time), got ", tokens.sizes());
  if (states) states->resize(block_refs_.size());
  auto x = embed_->forward(tokens);
  for (size_t i = 0; i < block_refs_.size(); ++i) {
    x = block_refs_[i]->forward(x, backend, states ? &(*states)[i] : nullptr, energy_drift);
  }
  return head_->forward(final_norm_->forward(x));
}

at::Tensor ByteLMImpl::step(const at::Tensor& tokens, std::vector<ManifoldState>& states) {
  TORCH_CHECK(tokens.dim() == 1, "ByteLM::step: tokens must be (batch,), got ", tokens.sizes());
  states.resize(block_refs_.size());
  auto x = embed_->forward(tokens);
  for (size_t i = 0; i < block_refs_.size(); ++i) x = block_refs_[i]->step(x, states[i]);
  return head_->forward(final_norm_->forward(x));
}

}  // namespace seqpar::models
