// Training checkpoints: model, optimizer, step, RNG state and data position in one file.
//
// File layout: a text header (magic, step, fingerprint length, payload length, FNV-1a-64
// checksum of fingerprint + payload), the option fingerprint (seqpar/train/options.h), then the
// payload, a LibTorch archive. Written to "<path>.tmp.<pid>", flushed, then renamed over the
// final name, so a crash never leaves a half-written file under a checkpoint's name. Loading
// verifies magic, lengths, checksum and fingerprint before touching the model and throws
// CheckpointError naming the file and what is wrong; nothing is overwritten on failure.
#pragma once

#include <seqpar/models/byte_lm.h>

#include <torch/torch.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace seqpar::train {

class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Everything besides the model and optimizer that a resumed run needs to continue exactly.
struct TrainProgress {
  int64_t step = 0;           // optimizer steps completed
  int64_t next_sequence = 0;  // index of the first training sequence of the next step
  at::Tensor rng_state;       // LibTorch's default CPU generator
};

void save_checkpoint(const std::string& path, const std::string& fingerprint,
                     models::ByteLM& model, torch::optim::Optimizer& optimizer,
                     const TrainProgress& progress);

// Loads into `model` and `optimizer` (which must have the same structure). When
// `expected_fingerprint` is non-empty and differs, throws listing the differing keys.
// Tensors are mapped onto `device`.
TrainProgress load_checkpoint(const std::string& path, const std::string& expected_fingerprint,
                              models::ByteLM& model, torch::optim::Optimizer* optimizer,
                              torch::Device device = torch::kCPU);

// "<dir>/step_00000042.ckpt"
std::string checkpoint_path(const std::string& dir, int64_t step);
// The checkpoint files in dir, oldest step first.
std::vector<std::string> list_checkpoints(const std::string& dir);
// Deletes all but the newest `keep` checkpoints in dir.
void prune_checkpoints(const std::string& dir, int64_t keep);

// The checkpoint `resume` names: a path as given, or for "latest" the newest in dir (throws
// CheckpointError when dir holds none).
std::string resolve_checkpoint(const std::string& resume, const std::string& dir);

// What a training run starts from (seqpar-train's resume, checkpoint_dir and overwrite keys):
// the checkpoint to load (empty: a fresh run), and whether a fresh run clears the checkpoints
// already in checkpoint_dir (overwrite). A fresh run into a directory that holds checkpoints
// without overwrite throws CheckpointError: it would mix two runs' files.
struct ResumePlan {
  std::string checkpoint;
  bool clear_checkpoint_dir = false;
};
ResumePlan plan_resume(const std::string& resume, const std::string& checkpoint_dir,
                       bool overwrite);

}  // namespace seqpar::train
