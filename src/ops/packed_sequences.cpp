// See packed_sequences.h.
#include "ops/packed_sequences.h"

#include <c10/util/Exception.h>

#include <algorithm>

namespace seqpar::ops {

bool holds_values(const at::Tensor& t) {
  return !t.is_meta() && !t.key_set().has_any(c10::DispatchKeySet(
                             {c10::DispatchKey::Python, c10::DispatchKey::Functionalize}));
}

at::Tensor check_cu_seqlens(const char* op, const at::Tensor& cu_seqlens, int64_t batch,
                            int64_t time) {
  TORCH_CHECK(cu_seqlens.defined(), op, ": argument 'cu_seqlens' is undefined");
  TORCH_CHECK(cu_seqlens.scalar_type() == at::kLong, op,
              ": argument 'cu_seqlens' must be an int64 tensor, got ", cu_seqlens.scalar_type());
  TORCH_CHECK(cu_seqlens.dim() == 1 && cu_seqlens.size(0) >= 1, op,
              ": argument 'cu_seqlens' must be 1-d with N + 1 >= 1 entries, got shape ",
              cu_seqlens.sizes());
  TORCH_CHECK(batch == 1, op, ": with 'cu_seqlens' the batch size must be 1 (the sequences are ",
              "packed along time), got batch ", batch);
  // Shapes only while tracing (Meta, fake and functional tensors have no values to read): the
  // kernel that runs on the real tensors checks the values.
  if (!holds_values(cu_seqlens)) return cu_seqlens;
  at::Tensor host = cu_seqlens.to(at::kCPU).contiguous();
  const int64_t* c = host.data_ptr<int64_t>();
  const int64_t n = host.numel();
  TORCH_CHECK(c[0] == 0, op, ": argument 'cu_seqlens' must start at 0, got ", c[0]);
  for (int64_t i = 1; i < n; ++i) {
    TORCH_CHECK(c[i] >= c[i - 1], op, ": argument 'cu_seqlens' must be non-decreasing, got ",
                c[i - 1], " then ", c[i], " at index ", i);
  }
  if (time >= 0) {
    TORCH_CHECK(c[n - 1] == time, op, ": argument 'cu_seqlens' must end at the packed length ",
                time, ", got ", c[n - 1]);
  }
  return host;
}

std::optional<at::Tensor> check_cu_seqlens(const char* op,
                                           const std::optional<at::Tensor>& cu_seqlens,
                                           int64_t batch, int64_t time) {
  if (!cu_seqlens || !cu_seqlens->defined()) return std::nullopt;
  return check_cu_seqlens(op, *cu_seqlens, batch, time);
}

std::optional<at::Tensor> check_scan_cu_seqlens(const char* op,
                                                const std::optional<at::Tensor>& cu_seqlens,
                                                const at::Tensor& a) {
  const bool sequence = a.defined() && a.dim() >= 2;
  return check_cu_seqlens(op, cu_seqlens, sequence ? a.size(0) : 1, sequence ? a.size(1) : 0);
}

void check_sequence_rows(const char* op, const char* name, const at::Tensor& state,
                         const at::Tensor& cu_seqlens) {
  const int64_t n = cu_seqlens.size(0) - 1;
  TORCH_CHECK(state.dim() >= 1 && state.size(0) == n, op, ": argument '", name,
              "' must have one row per sequence of 'cu_seqlens' (leading size ", n, "), got shape ",
              state.sizes());
}

PackedRange packed_range(const int64_t* cu, int64_t sequences, int64_t begin, int64_t end) {
  // The sequence holding a step: the last one starting at or before it (cu_i <= step < cu_{i+1}).
  const auto holding = [&](int64_t step) {
    return static_cast<int64_t>(std::upper_bound(cu, cu + sequences + 1, step) - cu) - 1;
  };
  PackedRange r;
  r.first = holding(begin);
  const int64_t last = holding(end - 1);
  r.count = last - r.first + 1;
  r.begins_before = cu[r.first] < begin;
  r.ends_after = cu[last + 1] > end;
  r.bounds.push_back(0);
  for (int64_t i = r.first + 1; i <= last; ++i) r.bounds.push_back(cu[i] - begin);
  r.bounds.push_back(end - begin);
  return r;
}

}  // namespace seqpar::ops
