// Plain parameter structs for the scan kernels: pointers, sizes and strides in elements.
//
// Kernels see no tensors and include no torch header (docs/design.md section 4), so they build and
// are tested without LibTorch. The LibTorch glue in src/ fills these structs from at::Tensor.
//
// Every 3-D operand is indexed (batch, time, channel) with its own strides, so any view works.
// Time always runs in the direction of increasing index; a reverse scan is expressed by the glue
// as a forward scan over a pointer to the last time step with a negated time stride. The
// kernels therefore never branch on direction.
#pragma once

#include <cstdint>

namespace seqpar::kernels {

// Element types the scan accepts.
enum class ScalarKind : int { kFloat32, kFloat64, kBFloat16, kFloat16, kComplex64 };

const char* scalar_kind_name(ScalarKind kind);

// The precision every state and composed map is carried in, per element type: the one table
// (docs/design.md section 1, docs/accuracy.md). float32 and float64 -> float64, complex64 ->
// complex128 (so that a scan's error does not grow with its length), bfloat16 and float16 ->
// float32. The CPU and CUDA type maps (cpu/element_types.h, cuda/scan_types.cuh) and the
// LibTorch side (ops::accumulation_dtype) all read it.
enum class AccumulationKind : int { kFloat32, kFloat64, kComplex128 };
constexpr AccumulationKind accumulation_kind(ScalarKind kind) {
  switch (kind) {
    case ScalarKind::kFloat32: return AccumulationKind::kFloat64;
    case ScalarKind::kFloat64: return AccumulationKind::kFloat64;
    case ScalarKind::kBFloat16: return AccumulationKind::kFloat32;
    case ScalarKind::kFloat16: return AccumulationKind::kFloat32;
    case ScalarKind::kComplex64: return AccumulationKind::kComplex128;
  }
  return AccumulationKind::kFloat64;
}

// Strides in elements of a (batch, time, channel) operand.
struct Strides3 {
  int64_t batch = 0;
  int64_t time = 0;
  int64_t channel = 0;
};

// Strides in elements of a (batch, channel) operand such as h0 or h_last.
struct Strides2 {
  int64_t batch = 0;
  int64_t channel = 0;
};

// A read-only or writable (batch, time, channel) operand.
struct ConstOperand3 {
  const void* data = nullptr;
  Strides3 stride;
};
struct Operand3 {
  void* data = nullptr;
  Strides3 stride;
};
// A (batch, channel) operand; data == nullptr means "absent" (zeros when read).
struct ConstOperand2 {
  const void* data = nullptr;
  Strides2 stride;
};
struct Operand2 {
  void* data = nullptr;
  Strides2 stride;
};

// Problem size shared by every scan kernel. channels is the product of all channel dims.
struct ScanShape {
  int64_t batch = 0;
  int64_t time = 0;
  int64_t channels = 0;
};

// Independent segments of the time range (packed sequences): bounds holds count + 1
// non-decreasing steps, bounds[0] = 0, bounds[count] = time. Segment i covers steps
// [bounds[i], bounds[i+1]) (possibly empty) and runs from its own initial state, row i of h0
// (zeros when h0 is absent); its last state goes to row i of h_last (h0 row i, or zeros, when
// empty). With segments, batch must be 1 and the batch stride of h0 / h_last / grad_h_last /
// grad_h0 indexes the segment. bounds == nullptr: one segment, the usual scan.
// The kernels cut their time ranges at the segment starts (CPU: scan_segments.h, CUDA: the
// segment start's map becomes (0, ...) inside the tile, scan_segments.cuh); a and b are never
// copied and no call is made per segment. Steps are in the kernel's time order: a reverse scan
// (negated time stride) passes bounds counted from its own first step, i.e. time - the
// reversed cu_seqlens, and h0 / h_last rows in that order (a negated batch stride does it).
struct ScanSegments {
  const int64_t* bounds = nullptr;  // host memory for the CPU kernels, device memory for CUDA
  int64_t count = 0;
};

// h_t = a_t * h_{t-1} + b_t for t = 0..time-1, h_{-1} = h0 (zeros when absent).
// Writes every h_t and h_last = h_{time-1} (h0 when time == 0).
struct ScanForwardParams {
  ScalarKind dtype = ScalarKind::kFloat32;
  ScanShape shape;
  ConstOperand3 a, b;
  ConstOperand2 h0;   // optional
  Operand3 h;
  Operand2 h_last;
  ScanSegments segments;  // optional: packed sequences (above)
  int num_threads = 1;  // CPU only: worker threads to use (>= 1)
  // Combine tiles in one fixed order so that results are bitwise identical run to run (CUDA:
  // slower for long chains of tiles, see docs/cuda.md; CPU: for a fixed num_threads, where the
  // default is bitwise reproducible only with one thread or shapes that do not tile time).
  bool deterministic = false;
};

// Adjoint of the forward scan (docs/design.md section 1):
//   lam_{T-1} = g_{T-1} + g_last,  lam_t = g_t + conj(a_{t+1}) * lam_{t+1}
//   grad_b_t = lam_t,  grad_a_t = lam_t * conj(h_{t-1}),  grad_h0 = conj(a_0) * lam_0
// grad_h (g) and grad_h_last (g_last) may be absent (zeros). grad_h0 is written when present;
// when time == 0 it equals grad_h_last. With segments, each segment is its own adjoint:
// grad_h_last row i enters at the segment's last step, nothing crosses a segment start,
// grad_a at a segment's first step uses h0 row i (or zero) as h_{t-1}, grad_h0 row i =
// conj(a_s) lam_s at its first step s (grad_h_last row i for an empty segment).
struct ScanBackwardParams {
  ScalarKind dtype = ScalarKind::kFloat32;
  ScanShape shape;
  ConstOperand3 a, h;
  ConstOperand2 h0;            // optional: the h_{-1} used by grad_a_0
  ConstOperand3 grad_h;        // optional
  ConstOperand2 grad_h_last;   // optional
  Operand3 grad_a, grad_b;
  Operand2 grad_h0;            // optional
  ScanSegments segments;       // optional: as in ScanForwardParams
  int num_threads = 1;
  bool deterministic = false;  // as in ScanForwardParams
};

// Propagator summary of a whole slice (docs/design.md section 2, step 1):
//   (A, B) = P_{T-1} o ... o P_0, i.e. A = prod_t a_t and h_{T-1} = A * h_{-1} + B.
// Composed in the accumulation precision (accumulation_kind), written in the input dtype.
struct ScanSummaryParams {
  ScalarKind dtype = ScalarKind::kFloat32;
  ScanShape shape;
  ConstOperand3 a, b;
  Operand2 A, B;
  int num_threads = 1;
  bool deterministic = false;  // as in ScanForwardParams
};

}  // namespace seqpar::kernels
