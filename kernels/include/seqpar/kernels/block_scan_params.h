// Plain parameter structs of the 2x2 block scan: h_t = A_t h_{t-1} + b_t with a 2x2 matrix A_t
// and 2-vectors b_t, h_t per (batch, channel) sequence (second-order and oscillatory models:
// position and velocity integrated together, LinOSS; docs/block_scan.md).
//
// As in scan_params.h the kernels see no tensors: every operand is indexed (batch, time,
// channel) with its own strides in elements, a reverse scan is a forward scan over a pointer to
// the last step with negated time stride, and the accumulation precision follows
// accumulation_kind (float32 and float64 -> float64, bfloat16 and float16 -> float32; complex64
// is not a block dtype). The 2x2 block of A and the 2 components of b / h / h0 / h_last are
// packed after the (batch, time, channel) index: A[..., i, j] at offset 2 i + j, x[..., i] at
// offset i. The glue (src/ops) copies an operand whose inner block is not packed.
//
// lower_triangular: A_t[0][1] is taken as zero and never read (its gradient is written as
// zero): the second-order (position, velocity) case, one multiply-add fewer per step.
#pragma once

#include "seqpar/kernels/scan_params.h"

namespace seqpar::kernels {

// h_t = A_t h_{t-1} + b_t, t = 0..time-1, h_{-1} = h0 (zeros when absent). Writes every h_t
// and h_last = h_{time-1} (h0 when time == 0).
struct BlockScanForwardParams {
  ScalarKind dtype = ScalarKind::kFloat32;
  ScanShape shape;
  ConstOperand3 A, b;  // A: 4 packed elements per (batch, time, channel); b: 2
  ConstOperand2 h0;    // optional, 2 per (batch, channel)
  Operand3 h;          // 2 per (batch, time, channel)
  Operand2 h_last;     // optional
  bool lower_triangular = false;
  int num_threads = 1;          // CPU only
  bool deterministic = false;   // as in ScanForwardParams
};

// The adjoint (docs/block_scan.md):
//   lam_{T-1} = g_{T-1} + g_last,  lam_t = g_t + A_{t+1}^T lam_{t+1}
//   grad_b_t = lam_t,  grad_A_t = lam_t h_{t-1}^T,  grad_h0 = A_0^T lam_0
// with h_{-1} = h0 (zeros when absent). grad_h and grad_h_last may be absent (zeros); grad_h0
// is written when present (grad_h_last when time == 0). With lower_triangular, grad_A[0][1]
// is written as zero.
struct BlockScanBackwardParams {
  ScalarKind dtype = ScalarKind::kFloat32;
  ScanShape shape;
  ConstOperand3 A, h;
  ConstOperand2 h0;           // optional
  ConstOperand3 grad_h;       // optional
  ConstOperand2 grad_h_last;  // optional
  Operand3 grad_A, grad_b;
  Operand2 grad_h0;           // optional
  bool lower_triangular = false;
  int num_threads = 1;
  bool deterministic = false;
};

// Propagator summary of a whole slice: (M, E) with h_{T-1} = M h_{-1} + E, i.e.
// M = A_{T-1} ... A_0 (4 packed elements per (batch, channel)) and E the state from zero (2).
// Composed in the accumulation precision, written in the input dtype.
struct BlockScanSummaryParams {
  ScalarKind dtype = ScalarKind::kFloat32;
  ScanShape shape;
  ConstOperand3 A, b;
  Operand2 M, E;
  bool lower_triangular = false;
  int num_threads = 1;
  bool deterministic = false;
};

}  // namespace seqpar::kernels
