// Packed variable-length sequences (docs/packed_sequences.md): flash-linear-attention's
// `cu_seqlens`, an int64 tensor [N + 1] of sequence starts, 0 first and the packed length last,
// non-decreasing; batch must be 1. Every op that takes it checks it here, with the same
// messages, and hands its kernels the host copy.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <vector>

namespace seqpar::ops {

// Whether t's values can be read here: false for Meta, fake and functional tensors (tracing).
bool holds_values(const at::Tensor& t);

// Checks cu_seqlens for a (batch, time, ...) input of `op` and returns it as a contiguous int64
// CPU tensor (a copy when it lives on a GPU; Meta, fake and functional tensors are returned
// unchecked: the values are checked where the kernel runs).
// Errors are RuntimeErrors naming 'cu_seqlens' (or the batch). time < 0: the end is not checked
// (sequence parallelism checks it against the sum of the ranks' slices).
at::Tensor check_cu_seqlens(const char* op, const at::Tensor& cu_seqlens, int64_t batch,
                            int64_t time);

// The same for an optional argument: std::nullopt when absent or undefined.
std::optional<at::Tensor> check_cu_seqlens(const char* op,
                                           const std::optional<at::Tensor>& cu_seqlens,
                                           int64_t batch, int64_t time);

// check_cu_seqlens for a scan op's `a` (batch, time, *channels); a shape error of `a` itself is
// left to the scan's own checks.
std::optional<at::Tensor> check_scan_cu_seqlens(const char* op,
                                                const std::optional<at::Tensor>& cu_seqlens,
                                                const at::Tensor& a);

// Checks that a per-sequence state `name` has N = cu_seqlens.numel() - 1 rows (its leading size).
void check_sequence_rows(const char* op, const char* name, const at::Tensor& state,
                         const at::Tensor& cu_seqlens);

// The sequences meeting the steps [begin, end) of a pack (cu: the N + 1 checked bounds, host),
// begin < end: the range holds pieces of sequences first .. first + count - 1 (empty sequences
// between them included, as empty pieces), with local bounds [count + 1] counted from begin.
// Used where a part of the pack runs on its own: a rank's slice (sp/packed_slice.cpp) and a
// checkpoint chunk of the packed scan (ops/scan_autograd.cpp).
struct PackedRange {
  int64_t first = 0, count = 0;
  std::vector<int64_t> bounds;
  bool begins_before = false;  // piece 0 continues a sequence begun before `begin`
  bool ends_after = false;     // the last piece's sequence goes on past `end`
};
PackedRange packed_range(const int64_t* cu, int64_t sequences, int64_t begin, int64_t end);

}  // namespace seqpar::ops
