// Training data for seqpar-train: a byte corpus read from files, two synthetic long-range
// tasks (selective copying, multi-query associative recall) and S5 state tracking.
//
// Every sequence is a pure function of (seed, sequence index): a rank asks for tokens
// [begin, end) of sequence i and reads or generates only those (plus the one token after
// `end`, the last target). So sp ranks read only their own slice of every sequence, dp ranks
// read different sequence indices, and the data position of a run is one counter (the next
// sequence index), which makes resuming exact.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace seqpar::train {

struct TrainOptions;

// A slice of a batch of sequences: inputs (batch, len) int64, targets (batch, len) int64 (the
// next token of each input), weights (batch, len) float32 (1 where the loss counts).
// documents: with packed documents (pack_documents), one int64 tensor per batch row, the
// row's document starts over the whole sequence as cu_seqlens ([N + 1], 0 first, the length
// last; docs/packed_sequences.md), the same on every sp rank; empty otherwise.
struct Slice {
  at::Tensor inputs, targets, weights;
  std::vector<at::Tensor> documents;
};

class Task {
 public:
  virtual ~Task() = default;
  virtual std::string describe() const = 0;
  virtual int64_t train_length() const = 0;
  // Tokens [begin, end) of training sequence `index`.
  virtual void train_tokens(int64_t index, int64_t begin, int64_t end, int64_t* inputs,
                            int64_t* targets, float* weights) const = 0;
  // Sum of the weights over a whole training sequence (the same for every index).
  virtual double train_weight() const = 0;

  virtual int64_t val_count() const = 0;  // validation sequences
  virtual int64_t val_length() const = 0;
  virtual void val_tokens(int64_t index, int64_t begin, int64_t end, int64_t* inputs,
                          int64_t* targets, float* weights) const = 0;
  virtual double val_weight() const = 0;

  // Packed documents: the document starts of a whole sequence as cu_seqlens (0 first, the
  // sequence's length last), computed from the index alone (no tokens read), so that every sp
  // rank knows the whole sequence's; empty for a task that does not pack documents.
  virtual std::vector<int64_t> train_documents(int64_t /*index*/) const { return {}; }
  virtual std::vector<int64_t> val_documents(int64_t /*index*/) const { return {}; }

  // Batch of training sequences first_index .. first_index + batch - 1, tokens [begin, end).
  Slice train_slice(int64_t first_index, int64_t batch, int64_t begin, int64_t end) const;
  Slice val_slice(int64_t index, int64_t begin, int64_t end) const;
};

// The task named by options.task. Throws std::runtime_error naming the path for unreadable data.
std::unique_ptr<Task> make_task(const TrainOptions& options);

// The half-open token range of sp rank `rank` out of `size` over `length` tokens: contiguous,
// in rank order, lengths differing by at most one.
std::pair<int64_t, int64_t> slice_range(int64_t length, int rank, int size);

// The slice for a model whose chunks of `chunk` tokens are scanned across ranks in a fixed
// tree (model = psm, seqpar/psm.h): rank r holds the aligned block of chunks [r b, (r + 1) b)
// clipped to the sequence, b the smallest power of two with size * b chunks covering it. The
// last ranks may hold less, or nothing.
std::pair<int64_t, int64_t> aligned_slice_range(int64_t length, int rank, int size,
                                                int64_t chunk);

// The regular files a list of paths names (directories expand to their regular files, sorted;
// symbolic links are skipped so a directory's aliases are not read twice).
std::vector<std::string> expand_corpus_paths(const std::vector<std::string>& paths);

}  // namespace seqpar::train
