// The training loop of seqpar-train: ByteLM on a Task, sequences split over the sp group,
// batches over the dp group, AdamW with warmup + cosine LR, gradient clipping, periodic
// validation, checkpoints and metrics.
//
// Loss convention (the one seqpar::sp::scan's gradients follow): rank r's loss is its slice's
// share of the global mean, sum over its scored tokens / (scored tokens of the whole batch), so
// the sp group's losses sum to the batch mean. Gradients (and the loss, in the same buffer) are
// summed over the whole dp x sp world in one all-reduce and divided by the dp size. Every rank
// then applies the same update, so parameters stay identical without a broadcast.
#pragma once

#include <seqpar/comm/bootstrap.h>
#include <seqpar/models/byte_lm.h>
#include <seqpar/train/data.h>
#include <seqpar/train/options.h>

#include <torch/torch.h>

#include <cmath>
#include <iosfwd>
#include <memory>
#include <optional>
#include <vector>

namespace seqpar::train {

struct StepRecord {
  int64_t step = 0;
  double loss = 0, lr = 0, tokens_per_s = 0;
  std::optional<double> val_loss;
};

struct TrainSummary {
  std::vector<StepRecord> history;  // steps run by this invocation
  int64_t first_step = 0, last_step = 0;
  double val_loss = NAN;
  double unigram_loss = NAN;  // cross-entropy of the validation targets under their own byte
                              // frequencies: the best any context-free predictor can do
  double val_accuracy = NAN;  // share of scored validation targets the arg max predicts
  double seconds = 0;
  int64_t peak_host_bytes = -1;    // this rank's peak resident set (seqpar/memory.h)
  int64_t peak_device_bytes = -1;  // on CUDA: the caching allocator's peak; -1 otherwise
};

models::ByteLMOptions model_options(const TrainOptions& options);
double learning_rate(const TrainOptions& options, int64_t step);  // step is 1-based
// Makes glibc malloc keep freed memory for reuse instead of returning it to the kernel (no
// mmap for big blocks, no trimming). A training step allocates and frees the same large
// activation buffers every step; with glibc's defaults each buffer >= 32 MB is a fresh mmap
// whose pages fault and get zeroed again, which at 2^17 tokens per rank halved throughput
// (docs/training.md). Costs some resident memory (freed blocks stay mapped). No-op elsewhere.
void keep_freed_host_memory();

// "cpu", "cuda:N", or "cuda": the GPU local_rank % device_count.
torch::Device select_device(const std::string& name);

class Trainer {
 public:
  // log: progress and summary stream (pass nullptr on ranks that should stay quiet).
  Trainer(const TrainOptions& options, comm::Grid grid, std::ostream* log);

  // Resumes if options.resume is set, trains to options.steps (or stop_after), validates,
  // checkpoints, writes metrics.
  TrainSummary run();

  // Forward + backward of the batch starting at training sequence `first_sequence` (the
  // dp rank's offset is added here); leaves the reduced gradients in the parameters and
  // returns the global loss. Exposed for tests.
  double compute_gradients(int64_t first_sequence);
  // Validation loss (and the unigram baseline) over the task's validation sequences.
  double validate();
  double unigram_loss() const { return unigram_loss_; }
  double val_accuracy() const { return val_accuracy_; }  // of the last validate()

  models::ByteLM& model() { return model_; }
  torch::optim::AdamW& optimizer() { return *optimizer_; }
  const comm::Grid& grid() const { return grid_; }
  torch::Device device() const { return device_; }

 private:
  void load(const std::string& path);
  void save(int64_t step);
  void reduce_gradients(double& loss);
  // This sp rank's token range of a sequence of `length` tokens.
  std::pair<int64_t, int64_t> my_slice(int64_t length) const;
  // The model's logits (batch, len, 256) for a slice; with packed documents one forward per
  // batch row, each with its row's document starts.
  at::Tensor logits_of(const Slice& slice, at::Tensor* energy_drift = nullptr);

  TrainOptions options_;
  comm::Grid grid_;
  std::ostream* log_;
  std::unique_ptr<Task> task_;
  models::ByteLM model_{nullptr};
  models::SequenceBackend backend_;
  torch::Device device_{torch::kCPU};
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  int64_t step_ = 0, next_sequence_ = 0;
  double unigram_loss_ = NAN;
  double val_accuracy_ = NAN;
};

}  // namespace seqpar::train
