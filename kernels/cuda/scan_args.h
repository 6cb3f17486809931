// Arguments of the scan kernels in walk order, shared by the kernel (scan_kernel.cuh) and the
// host planner (scan_plan.h). Plain data, no CUDA types, so host-only code can build them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace seqpar::kernels::cuda::detail {

enum class OpKind { kForward, kBackward, kSummary };

// Status of a tile's entry in the look-back scratch. Zeroed before each launch.
enum : int { kFlagEmpty = 0, kFlagAggregate = 1, kFlagInclusive = 2 };

// A (batch, time, channel) operand seen in walk order: element (b, u, c) is at
// p + b*sb + c*sc + u*st. p == nullptr means absent (zeros).
struct WalkOperand {
  const void* p = nullptr;
  int64_t sb = 0, sc = 0, st = 0;
};
struct OutOperand {
  void* p = nullptr;
  int64_t sb = 0, sc = 0, st = 0;
};
// A (batch, channel) operand.
struct StateIn {
  const void* p = nullptr;
  int64_t sb = 0, sc = 0;
};
struct StateOut {
  void* p = nullptr;
  int64_t sb = 0, sc = 0;
};

// Roles per op:            x0      x1       x2      y0       y1       s0        s1   z0       z1
//   forward                a       b        -       h        -        h0        -    h_last   -
//   backward (reversed)    a       grad_h   h       grad_a   grad_b   grad_last h0   grad_h0  -
//   summary                a       b        -       -        -        -         -    A        B
struct KernelArgs {
  int64_t batch = 0, time = 0, channels = 0;
  int64_t channel_blocks = 0;  // ceil(channels / kCols)
  int64_t time_tiles = 0;      // ceil((time + phase) / kTileLen)
  int64_t phase = 0;           // walk steps before step 0 in the first tile: aligns vector chunks
  // 1: each tile waits for its predecessor's inclusive prefix instead of the decoupled
  // look-back: one fixed composition order (bitwise reproducible); chosen for deterministic
  // mode and whenever there are as many column groups as SMs (scan_launch.cuh).
  int chained = 0;
  WalkOperand x0, x1, x2;
  OutOperand y0, y1;
  StateIn s0, s1;
  StateOut z0, z1;
  // Packed sequences (ScanSegments, scan_params.h): seg_count + 1 bounds in device memory,
  // in time order; nullptr: one segment (batch is 1 otherwise). scan_segments.cuh.
  const int64_t* seg_bounds = nullptr;
  int64_t seg_count = 0;
  int* flags = nullptr;               // [groups * time_tiles]
  void* aggregates = nullptr;         // Map<Acc>[groups * time_tiles * kCols]
  void* inclusives = nullptr;         // Map<Acc>[groups * time_tiles * kCols]
  unsigned int* tile_counter = nullptr;
};

// Caller-provided look-back scratch (cuda_scan.h); ptr == nullptr means "allocate per call".
struct Workspace {
  void* ptr = nullptr;
  size_t bytes = 0;
};

}  // namespace seqpar::kernels::cuda::detail
