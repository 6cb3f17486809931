// Fills the kernels' plain parameter structs from tensors (docs/design.md rule 1): the one place
// where at::Tensor meets kernels/. Shared by the CPU and CUDA backends.
//
// Channel dims are flattened to one (batch, time, channels) view without a copy when the
// strides allow it; outputs are allocated in the input's memory layout (channels-last or
// time-contiguous alike) so that the kernel reads and writes the same way. reverse=True is
// encoded as a pointer to the last step with a negated time stride.
#pragma once

#include <ATen/ATen.h>

#include <optional>

#include "seqpar/kernels/scan_params.h"

namespace seqpar::ops {

kernels::ScalarKind scalar_kind_of(const char* op, const char* name, const at::Tensor& t);
// The dtype the kernels accumulate `t` in (kernels::accumulation_kind): float64 for float32 and
// float64, complex128 for complex64, float32 for bfloat16 and float16. A dtype the kernels do
// not take maps to itself.
at::ScalarType accumulation_dtype(at::ScalarType t);

// Allocates an output shaped and laid out like `like` (batch, time, *channels) whose channel
// dims can be flattened without a copy; on the CPU, from 8 MiB on, starting on a 2 MiB
// boundary (kernel_params.cpp).
at::Tensor empty_sequence_like(const at::Tensor& like);

// An output with these sizes and strides, under the same rule (from 8 MiB on, CPU outputs start
// on a 2 MiB boundary; the 2x2 block scan's outputs use it too).
at::Tensor empty_output(at::IntArrayRef sizes, at::IntArrayRef strides,
                        const at::TensorOptions& options);

// Views (batch, time, *channels) as (batch, time, channels); copies only when it must.
at::Tensor flatten_channels(const at::Tensor& seq);
// Views (batch, *channels) as (batch, channels).
at::Tensor flatten_state(const at::Tensor& state);

kernels::ConstOperand3 const_operand3(const at::Tensor& btd, bool reverse);
kernels::Operand3 operand3(const at::Tensor& btd, bool reverse);
kernels::ConstOperand2 const_operand2(const std::optional<at::Tensor>& bd);
kernels::Operand2 operand2(const at::Tensor& bd);

// Packed sequences as the kernels take them (scan_params.h, ScanSegments): the bounds in the
// kernels' time order on `device` (with reverse, time - the reversed cu_seqlens, so that each
// sequence runs from its own end) and the number of sequences. cu_seqlens: the checked host
// copy (ops/packed_sequences.h).
struct SegmentBounds {
  at::Tensor bounds;  // int64 [count + 1]
  int64_t count = 0;
  bool reverse = false;
};
std::optional<SegmentBounds> segment_bounds(const std::optional<at::Tensor>& cu_seqlens,
                                            int64_t time, bool reverse, at::Device device);

// Outputs of a forward scan plus the parameters that write them. The flattened views are kept
// here so that copies made by flatten_channels stay alive until the kernel has run.
struct PreparedForward {
  at::Tensor h, h_last;           // returned to the caller
  at::Tensor a3, b3, h3, h0_2, hl2;  // flattened views the kernel uses
  std::optional<SegmentBounds> segments;
  kernels::ScanForwardParams params;
};
PreparedForward prepare_forward(const at::Tensor& a, const at::Tensor& b,
                                const std::optional<at::Tensor>& h0, bool reverse,
                                const std::optional<SegmentBounds>& segments = std::nullopt);

struct PreparedBackward {
  at::Tensor grad_a, grad_b, grad_h0;
  at::Tensor a3, h3, h0_2, gh3, ghl2, ga3, gb3, gh0_2;
  std::optional<SegmentBounds> segments;
  kernels::ScanBackwardParams params;
};
PreparedBackward prepare_backward(const at::Tensor& a, const at::Tensor& h,
                                  const std::optional<at::Tensor>& h0,
                                  const std::optional<at::Tensor>& grad_h,
                                  const std::optional<at::Tensor>& grad_h_last, bool reverse,
                                  const std::optional<SegmentBounds>& segments = std::nullopt);

struct PreparedSummary {
  at::Tensor A, B;
  at::Tensor a3, b3, A2, B2;
  kernels::ScanSummaryParams params;
};
PreparedSummary prepare_summary(const at::Tensor& a, const at::Tensor& b, bool reverse);

// True when the problem has no elements to compute (batch, time or channels is zero).
inline bool is_empty_problem(const kernels::ScanShape& s) {
  return s.batch == 0 || s.time == 0 || s.channels == 0;
}

}  // namespace seqpar::ops
