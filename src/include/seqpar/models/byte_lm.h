// A byte-level language model: embedding(256) -> N blocks -> final RMS norm -> linear head
// over 256 bytes. The blocks are ManifoldScan layers (ModelKind::kManifold; kLinoss: in their
// linoss mode) or matrix-state
// layers (MatrixStateBlock: kGla or kGatedDeltaNet) or prefix-scannable layers (PsmBlock:
// kPsm).
//
// forward() is the training path (parallel scans through a SequenceBackend, so a rank may hold
// only a slice of each sequence); step() is the streaming path (constant state per layer, one
// token at a time). Given the same prefix the two give the same logits up to float rounding.
#pragma once

#include <seqpar/models/manifold_scan.h>
#include <seqpar/models/matrix_state_block.h>
#include <seqpar/models/model_kind.h>
#include <seqpar/models/psm_block.h>

#include <torch/torch.h>

#include <string>
#include <vector>

namespace seqpar::models {

struct ByteLMOptions {
  int64_t layers = 2;
  ModelKind kind = ModelKind::kManifold;
  ManifoldScanOptions block;            // manifold and linoss blocks (linoss set from kind)
  MatrixStateBlockOptions matrix_block; // gla / gated_deltanet blocks (variant = kind)
  PsmBlockOptions psm_block;            // psm blocks
  static constexpr int64_t kVocab = 256;
};

// Recurrent state of one layer: the manifold block's (velocity, position), a matrix-state
// block's S (batch, heads, K, V) and short-convolution inputs, or a psm block's binary counter
// and pending tokens.
struct LayerState {
  ManifoldState manifold;
  MatrixBlockState matrix;
  PsmState psm;
};

class ByteLMImpl : public torch::nn::Module {
 public:
  explicit ByteLMImpl(const ByteLMOptions& options);

  // tokens: (batch, time) int64 in [0, 256). Returns logits (batch, time, 256).
  // states (optional): one per layer, read and replaced (see the blocks' forward).
  // energy_drift (optional): summed over the manifold layers (matrix-state layers add none).
  // documents (optional): packed documents (tokens of batch 1; docs/packed_sequences.md), every
  // layer's recurrences and convolutions restart at each document start, as if each document
  // ran alone. Manifold, gla and gated_deltanet layers; not with states or energy_drift.
  at::Tensor forward(const at::Tensor& tokens, const SequenceBackend& backend,
                     std::vector<LayerState>* states = nullptr,
                     at::Tensor* energy_drift = nullptr,
                     const Documents& documents = std::nullopt);

  // tokens: (batch,) int64. Returns logits (batch, 256); states sized to the layer count.
  at::Tensor step(const at::Tensor& tokens, std::vector<LayerState>& states);

  const ByteLMOptions& options() const { return options_; }

 private:
  ByteLMOptions options_;
  torch::nn::Embedding embed_{nullptr};
  torch::nn::ModuleList blocks_;
  std::vector<ManifoldScan> block_refs_;          // manifold blocks
  std::vector<MatrixStateBlock> matrix_refs_;     // or matrix-state blocks
  std::vector<PsmBlock> psm_refs_;                // or psm blocks
  RMSNorm final_norm_{nullptr};
  torch::nn::Linear head_{nullptr};
};
TORCH_MODULE(ByteLM);

}  // namespace seqpar::models
