// The 2x2 block scan's tensors checked and turned into kernel params
// (kernels/include/seqpar/kernels/block_scan_params.h), for the CPU and CUDA backends alike.
//
// Shapes: A (batch, time, *channels, 2, 2), b and h (batch, time, *channels, 2), h0 and h_last
// (batch, *channels, 2). The (batch, time, channels) strides may be anything; the 2x2 block and
// the pair must be packed (last dims of strides (2, 1) and 1) after flattening the channels,
// and an operand whose block is not is copied once here. Outputs take b's layout where it has
// a packed pair (time-major inputs give time-major outputs), else the contiguous one.
#pragma once

#include <ATen/ATen.h>

#include <optional>

#include "seqpar/kernels/block_scan_params.h"

namespace seqpar::ops {

// Errors name the op and the argument.
void check_block_inputs(const char* op, const at::Tensor& A, const at::Tensor& b,
                        const char* b_name, const std::optional<at::Tensor>& h0);
// The state shape (batch, *channels, 2) of a block sequence (batch, time, *channels, 2).
std::vector<int64_t> block_state_shape(const at::Tensor& seq);
// An output shaped like the block sequence `like`, in its layout where that is packed.
at::Tensor empty_block_like(const at::Tensor& like);

struct PreparedBlockForward {
  at::Tensor h, h_last;
  at::Tensor A4, b3, h3, h0_2, hl2;  // flattened views (or copies) the kernel reads and writes
  kernels::BlockScanForwardParams params;
};
PreparedBlockForward prepare_block_forward(const at::Tensor& A, const at::Tensor& b,
                                           const std::optional<at::Tensor>& h0, bool reverse,
                                           bool lower_triangular);

struct PreparedBlockBackward {
  at::Tensor grad_A, grad_b, grad_h0;
  at::Tensor A4, h3, h0_2, gh3, ghl2, gA4, gb3, gh0_2;
  kernels::BlockScanBackwardParams params;
};
PreparedBlockBackward prepare_block_backward(const at::Tensor& A, const at::Tensor& h,
                                             const std::optional<at::Tensor>& h0,
                                             const std::optional<at::Tensor>& grad_h,
                                             const std::optional<at::Tensor>& grad_h_last,
                                             bool reverse, bool lower_triangular);

struct PreparedBlockSummary {
  at::Tensor M, E;
  at::Tensor A4, b3, M2, E2;
  kernels::BlockScanSummaryParams params;
};
PreparedBlockSummary prepare_block_summary(const at::Tensor& A, const at::Tensor& b,
                                           bool reverse, bool lower_triangular);

}  // namespace seqpar::ops
