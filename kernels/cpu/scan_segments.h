// Packed sequences (ScanSegments, scan_params.h) in the engine's step order.
//
// The engine never tests a step for a segment start inside its loops: it cuts every range it
// runs or summarizes at the starts (scan_engine.h, segmented_run / segmented_aggregate), so the
// dense inner loops run unchanged on the pieces. This header turns the caller's bounds (time
// order) into the list of non-empty segments in step order, which is time order for the
// forward pass and reversed time for the backward pass (step k = time T-1-k), and answers
// "which segment holds step k" and "the last segment start in [k0, k1)" by binary search.
// Empty segments hold no step; run_policy writes their final state (their initial one) once.
#pragma once

#include "target.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "seqpar/kernels/scan_params.h"

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET::engine {

// A non-empty segment: steps [k0, k1) in step order; row indexes h0 / h_last (forward) or
// grad_h_last / grad_h0 (backward).
struct StepSegment {
  int64_t k0 = 0, k1 = 0, row = 0;
};

struct StepSegments {
  bool on = false;                // false: one segment, the dense scan
  std::vector<StepSegment> list;  // non-empty segments, ascending k0; they tile [0, time)

  // Index of the segment that holds step k (0 <= k < time).
  size_t holding(int64_t k) const {
    const auto it = std::upper_bound(list.begin(), list.end(), k,
                                     [](int64_t x, const StepSegment& s) { return x < s.k1; });
    return size_t(it - list.begin());
  }
  // The last segment starting in [k0, k1), or nullptr.
  const StepSegment* last_start(int64_t k0, int64_t k1) const {
    const StepSegment& s = list[holding(k1 - 1)];
    return s.k0 >= k0 ? &s : nullptr;
  }
  bool starts_at(int64_t k) const { return list[holding(k)].k0 == k; }
};

// reversed: step k is time T-1-k (the backward pass).
inline StepSegments make_step_segments(const ScanSegments& seg, int64_t time, bool reversed) {
  StepSegments out;
  if (seg.bounds == nullptr) return out;
  out.on = true;
  const int64_t* b = seg.bounds;
  for (int64_t j = 0; j < seg.count; ++j) {
    const int64_t i = reversed ? seg.count - 1 - j : j;
    if (b[i + 1] <= b[i]) continue;
    out.list.push_back(reversed ? StepSegment{time - b[i + 1], time - b[i], i}
                                : StepSegment{b[i], b[i + 1], i});
  }
  return out;
}

}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET::engine
