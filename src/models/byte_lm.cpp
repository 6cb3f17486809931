// ByteLM: embedding -> ManifoldScan, MatrixStateBlock or PsmBlock blocks -> norm -> head
// (seqpar/models/byte_lm.h).
#include "seqpar/models/byte_lm.h"

namespace seqpar::models {

ByteLMImpl::ByteLMImpl(const ByteLMOptions& options) : options_(options) {
  TORCH_CHECK(options.layers > 0, "ByteLM: layers must be positive, got ", options.layers);
  const bool manifold = uses_manifold_blocks(options.kind);
  const bool psm = options.kind == ModelKind::kPsm;
  const int64_t D = manifold ? options.block.d_model
                             : psm ? options.psm_block.d_model : options.matrix_block.d_model;
  embed_ = register_module("embed", torch::nn::Embedding(ByteLMOptions::kVocab, D));
  blocks_ = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < options.layers; ++i) {
    if (manifold) {
      ManifoldScanOptions b = options.block;
      b.linoss = options.kind == ModelKind::kLinoss;
      block_refs_.push_back(ManifoldScan(b));
      blocks_->push_back(block_refs_.back());
    } else if (psm) {
      psm_refs_.push_back(PsmBlock(options.psm_block));
      blocks_->push_back(psm_refs_.back());
    } else {
      MatrixStateBlockOptions m = options.matrix_block;
      m.variant = options.kind;
      matrix_refs_.push_back(MatrixStateBlock(m));
      blocks_->push_back(matrix_refs_.back());
    }
  }
  final_norm_ = register_module("final_norm", RMSNorm(D));
  head_ = register_module("head", torch::nn::Linear(D, ByteLMOptions::kVocab));
}

at::Tensor ByteLMImpl::forward(const at::Tensor& tokens, const SequenceBackend& backend,
                               std::vector<LayerState>* states, at::Tensor* energy_drift,
                               const Documents& documents) {
  TORCH_CHECK(tokens.dim() == 2, "ByteLM: tokens must be (batch, time), got ", tokens.sizes());
  TORCH_CHECK(!documents || options_.kind != ModelKind::kPsm,
              "ByteLM: documents (packed sequences) are not supported by the psm model: its "
              "learned aggregation of chunk states has no restart at a document start");
  if (states) states->resize(options_.layers);
  auto x = embed_->forward(tokens);
  for (size_t i = 0; i < block_refs_.size(); ++i) {
    x = block_refs_[i]->forward(x, backend, states ? &(*states)[i].manifold : nullptr,
                                energy_drift, documents);
  }
  for (size_t i = 0; i < matrix_refs_.size(); ++i) {
    x = matrix_refs_[i]->forward(x, backend, states ? &(*states)[i].matrix : nullptr,
                                 documents);
  }
  for (size_t i = 0; i < psm_refs_.size(); ++i) {
    x = psm_refs_[i]->forward(x, backend, states ? &(*states)[i].psm : nullptr);
  }
  return head_->forward(final_norm_->forward(x));
}

at::Tensor ByteLMImpl::step(const at::Tensor& tokens, std::vector<LayerState>& states) {
  TORCH_CHECK(tokens.dim() == 1, "ByteLM::step: tokens must be (batch,), got ", tokens.sizes());
  states.resize(options_.layers);
  auto x = embed_->forward(tokens);
  for (size_t i = 0; i < block_refs_.size(); ++i) x = block_refs_[i]->step(x, states[i].manifold);
  for (size_t i = 0; i < matrix_refs_.size(); ++i) x = matrix_refs_[i]->step(x, states[i].matrix);
  for (size_t i = 0; i < psm_refs_.size(); ++i) x = psm_refs_[i]->step(x, states[i].psm);
  return head_->forward(final_norm_->forward(x));
}

}  // namespace seqpar::models
