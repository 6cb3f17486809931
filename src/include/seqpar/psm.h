// Prefix-scannable models (docs/design.md section 4; docs/psm.md): the scans over chunk states
// with a learned aggregation Agg that need not be associative.
//
// A sequence of n chunks has chunk states m_0 .. m_{n-1} (each a tensor, e.g. (c, d)); the model
// needs the exclusive prefix s_i of every chunk. For a non-associative Agg the prefix depends
// on the parenthesization, so every path here uses the one of the static Blelloch scan:
//   s_i = ((B_1 . B_2) . B_3) ...,   x . y = Agg(x, y) (x the earlier),
// where B_1, B_2, ... are the aligned power-of-two blocks that tile [0, i), largest first, and a
// block's value is the balanced tree Agg(left half, right half). s_0 is the identity, which is
// a flag: Agg never sees it (Agg(x, e) = Agg(e, x) = x).
//   static_scan      training on one device: O(log n) sequential batched Agg calls;
//   sp_static_scan   the same with the chunks split over a sequence-parallel group, each rank
//                    holding an aligned power-of-two block of chunks: the same prefixes and,
//                    through autograd, the same gradients as one device;
//   BinaryCounter    streaming inference: O(log n) stored roots, amortized O(1) Agg calls per
//                    chunk, and prefixes equal to the static scan's.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <optional>
#include <vector>

namespace seqpar::comm {
class Communicator;
}

namespace seqpar::psm {

// A learned binary aggregation of chunk states, batched: left and right are (N, ...) (N pairs,
// each entry a chunk state), the result is shaped the same, row i = Agg(left[i], right[i]).
// `parameters` are the tensors it differentiates through (the module's parameters); the
// sequence-parallel scan returns their gradients from its cross-rank part, so they must be
// complete for sp_static_scan (the one-device paths need only `fn`).
struct Aggregate {
  std::function<at::Tensor(const at::Tensor& left, const at::Tensor& right)> fn;
  std::vector<at::Tensor> parameters;
  at::Tensor operator()(const at::Tensor& left, const at::Tensor& right) const {
    return fn(left, right);
  }
};

// Exclusive prefixes of a batch of chunk sequences. states (batch, n, ...): s_i for chunk i.
// When first_is_identity, chunk 0's prefix is the identity and states[:, 0] holds zeros.
struct Prefixes {
  at::Tensor states;
  bool first_is_identity = true;
};

// chunks (batch, n, ...), n >= 0. entering (batch, ...), optional: the prefix of the chunk
// before the first (then it is combined first and no prefix is the identity). Differentiable.
Prefixes static_scan(const at::Tensor& chunks, const Aggregate& agg,
                     const std::optional<at::Tensor>& entering = std::nullopt);

// The same with the chunks of one sequence split over `group`: rank r passes its chunks
// (batch, n_r, ...) in rank order. Layout: rank 0's count n_0 is a power of two; every rank
// before the last non-empty one holds n_0 chunks, that one at most n_0, later ranks none; and
// only the last non-empty rank's last chunk may be partial (`partial_last_chunk`: its state
// encodes padding, so no other rank's prefix may read it). Otherwise std::invalid_argument,
// naming the counts, on every rank. Returns this rank's prefixes, equal to one device's
// static_scan of the concatenation (a rank without chunks gets an empty tensor; its flag means
// nothing). Collective, also in backward; the group must outlive the backward pass.
Prefixes sp_static_scan(const at::Tensor& chunks, const Aggregate& agg,
                        std::shared_ptr<comm::Communicator> group,
                        bool partial_last_chunk = false);

// Online inference: push chunk states one at a time. Holds one root per set bit of the chunk
// count (the values of the aligned blocks tiling [0, n)) and, with each, the left fold of the
// roots up to it, so a push costs its carries plus one Agg call.
class BinaryCounter {
 public:
  explicit BinaryCounter(Aggregate agg);

  // m: a chunk state (batch, ...).
  void push(const at::Tensor& m);
  // The exclusive prefix of the next chunk (nullopt: the identity, before the first push).
  std::optional<at::Tensor> prefix() const;

  int64_t chunks() const { return chunks_; }
  int64_t agg_calls() const { return agg_calls_; }
  int64_t roots() const { return static_cast<int64_t>(entries_.size()); }
  // Bytes of the stored roots and folds.
  int64_t stored_bytes() const;

 private:
  struct Entry {
    int level;          // the root covers 2^level chunks
    at::Tensor root;    // the block's value
    at::Tensor fold;    // left fold of every root from the largest up to this one
  };
  Aggregate agg_;
  std::vector<Entry> entries_;  // largest block first
  int64_t chunks_ = 0;
  int64_t agg_calls_ = 0;
};

}  // namespace seqpar::psm
