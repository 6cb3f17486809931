// A byte-level language model built from ManifoldScan blocks: embedding(256) -> N blocks ->
// final RMS norm -> linear head over 256 bytes.
//
// forward() is the training path (parallel scans through a SequenceBackend, so a rank may hold
// only a slice of each sequence); step() is the streaming path (constant state per layer, one
// token at a time). Given the same prefix the two give the same logits up to float rounding.
#pragma once

#include <seqpar/models/manifold_scan.h>

#include <torch/torch.h>

#include <string>
#include <vector>

namespace seqpar::models {

struct ByteLMOptions {
  int64_t layers = 2;
  ManifoldScanOptions block;
  static constexpr int64_t kVocab = 256;
};

class ByteLMImpl : public torch::nn::Module {
 public:
  explicit ByteLMImpl(const ByteLMOptions& options);

  // tokens: (batch, time) int64 in [0, 256). Returns logits (batch, time, 256).
  // states (optional): one per layer, read and replaced (see ManifoldScan::forward).
  // energy_drift (optional): summed over layers.
  at::Tensor forward(const at::Tensor& tokens, const SequenceBackend& backend,
                     std::vector<ManifoldState>* states = nullptr,
                     at::Tensor* energy_drift = nullptr);

  // tokens: (batch,) int64. Returns logits (batch, 256); states sized to the layer count.
  at::Tensor step(const at::Tensor& tokens, std::vector<ManifoldState>& states);

  const ByteLMOptions& options() const { return options_; }

 private:
  ByteLMOptions options_;
  torch::nn::Embedding embed_{nullptr};
  torch::nn::ModuleList blocks_;
  std::vector<ManifoldScan> block_refs_;
  RMSNorm final_norm_{nullptr};
  torch::nn::Linear head_{nullptr};
};
TORCH_MODULE(ByteLM);

}  // namespace seqpar::models
