// seqpar's C++ API for the 2x2 block linear recurrence
//
//     h_t = A_t h_{t-1} + b_t,   t = 1..T along dim 1,   h_0 = h0 (zeros when absent)
//
// with a 2x2 matrix A_t and 2-vectors b_t, h_t per (batch, channel): second-order models that
// integrate position with velocity in one scan (x_t = x_{t-1} + dt v_t with v_t = a v_{t-1} +
// u_t is A = [[a, 0], [dt a, 1]], b = (u, dt u)), oscillatory state-space models (LinOSS).
// A: (batch, time, *channels, 2, 2), b: (batch, time, *channels, 2), same dtype (float32,
// float64, bfloat16, float16), any strides (a 2x2 block that is not packed is copied once).
// h0: (batch, *channels, 2) or empty. Returns (h, h_last) like seqpar::scan. Accumulates in
// float64 for float32 and float64, float32 for bfloat16 and float16 (docs/accuracy.md);
// differentiable in A, b and h0 through one fused backward pass (docs/block_scan.md).
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace seqpar {

struct BlockScanOptions {
  bool reverse = false;  // run time from the end: h_t = A_t h_{t+1} + b_t
  // A[..., 0, 1] is taken as zero and never read (its gradient is zero): the second-order
  // (velocity, position) systems, one multiply-add fewer per step.
  bool lower_triangular = false;
  bool deterministic = false;  // as in ScanOptions
};

std::tuple<at::Tensor, at::Tensor> block_scan(const at::Tensor& A, const at::Tensor& b,
                                              const std::optional<at::Tensor>& h0 = std::nullopt,
                                              const BlockScanOptions& options = {});

// The summary (M, E) of the whole time range: h_last = M h0 + E for any h0, M (batch,
// *channels, 2, 2), E (batch, *channels, 2). Not differentiable; the sequence-parallel scan's
// reduction step.
std::tuple<at::Tensor, at::Tensor> block_scan_summary(const at::Tensor& A, const at::Tensor& b,
                                                      const BlockScanOptions& options = {});

}  // namespace seqpar
