// Packed sequences (ScanSegments, scan_params.h) inside the CUDA scan tiles.
//
// A segment start is folded into the step's own map: in the walk, the first step of a segment
// gets coefficient 0 and input (coef * init + input) for the forward (h_s = a_s h0_i + b_s),
// (input + init) for the backward (lam at a segment's last step = g + grad_h_last_i). Every
// composition after it (in-thread fold, warp shuffles, the look-back over tiles) then carries
// nothing across the start, with no change to the scan itself; a tile's map after a start is
// (0, ...), i.e. an inclusive state. The replay writes each segment's final state (forward:
// h_last row i at its last step; backward: grad_h0 row i = conj(a_s) lam_s at its first step
// in time, where h_{t-1} is h0 row i). The modified input is held in the register type of the
// storage (float for float32 / bfloat16 / float16), so the state entering a segment's second
// step is rounded once to it, as its output is; the carried state stays in the accumulation
// type from there on.
//
// Each thread finds the segment of its first item by binary search in the range that thread 0
// found for the whole tile (usually one or two bounds), then follows its items with a cursor:
// a few cached loads per thread, none per step. Kernels without segments skip all of it on
// one uniform branch.
#pragma once

#include <cstdint>

namespace seqpar::kernels::cuda::detail {

// Largest i in [lo, hi] with bounds[i] <= t (bounds[lo] <= t assumed).
__device__ __forceinline__ int64_t segment_search(const int64_t* bounds, int64_t lo, int64_t hi,
                                                  int64_t t) {
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (bounds[mid] <= t)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

// The segment holding time t, followed as t moves by one step at a time (either way): the
// segment `seg` covers times [first, end). Empty segments are stepped over.
struct SegmentCursor {
  const int64_t* bounds = nullptr;
  int64_t seg = 0, first = 0, end = 0;

  __device__ __forceinline__ void start(const int64_t* b, int64_t lo, int64_t hi, int64_t t) {
    bounds = b;
    seg = segment_search(b, lo, hi, t);
    first = b[seg];
    end = b[seg + 1];
  }
  __device__ __forceinline__ void move_to(int64_t t) {
    while (t >= end) {
      ++seg;
      first = end;
      end = bounds[seg + 1];
    }
    while (t < first) {
      --seg;
      end = first;
      first = bounds[seg];
    }
  }
};

}  // namespace seqpar::kernels::cuda::detail
