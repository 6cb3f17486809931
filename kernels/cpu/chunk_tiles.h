// What the fused chunk kernels of the matrix-state recurrences share (chunk_delta_rule.cpp,
// chunk_gla.cpp): moving one chunk of one head between the users' strided layout and a small
// contiguous row-major tile in the compute type, vectorized exponentials, the row-major GEMM
// through the caller's BLAS, and the walk over a run's segments and chunks (for_each_chunk).
// The scheduling of (batch, head) pairs and of ranges of their chunks is in chunk_ranges.h.
//
// Compiled per instruction-set target like the scan engine (target.h). Exponentials use
// Highway's vectorized Exp where the build has Highway (std::exp otherwise): a chunk needs
// thousands of them, and scalar calls would cost as much as the chunk's matrix products.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "element_types.h"
#include "seqpar/kernels/matrix_state_params.h"

#if defined(SEQPAR_HAVE_HWY)
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>
#endif

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET {

// x[i] = exp(x[i]) for i < n.
template <class T>
inline void exp_inplace(T* x, int64_t n) {
#if defined(SEQPAR_HAVE_HWY)
  namespace hn = hwy::HWY_NAMESPACE;
  const hn::ScalableTag<T> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) hn::StoreU(hn::Exp(d, hn::LoadU(d, x + i)), d, x + i);
  for (; i < n; ++i) x[i] = std::exp(x[i]);
#else
  for (int64_t i = 0; i < n; ++i) x[i] = std::exp(x[i]);
#endif
}

// Storage type of a ScalarKind's elements; the compute type is double for float64, else float.
template <class In> struct ComputeOf { using type = float; };
template <> struct ComputeOf<double> { using type = double; };

template <class T> GemmFn<T> gemm_of(const MatrixGemm& g);
template <> inline GemmFn<float> gemm_of<float>(const MatrixGemm& g) { return g.f32; }
template <> inline GemmFn<double> gemm_of<double>(const MatrixGemm& g) { return g.f64; }

// Row-major products on contiguous tiles (leading dimension = columns after no transpose).
template <class T>
struct Gemm {
  GemmFn<T> fn;
  // C (m x n, ldc) = alpha * op(A) op(B) + beta * C.
  void operator()(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                  int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) const {
    if (m == 0 || n == 0) return;
    if (k == 0) {
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
      return;
    }
    fn(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
};

// Address of element (b, t, h, j) of a per-step operand.
template <class In>
inline const In* step_ptr(const StepOperand& x, int64_t b, int64_t t, int64_t h) {
  return static_cast<const In*>(x.data) + b * x.batch + t * x.time + h * x.head;
}
template <class In>
inline In* step_ptr(const MutableStepOperand& x, int64_t b, int64_t t, int64_t h) {
  return static_cast<In*>(x.data) + b * x.batch + t * x.time + h * x.head;
}

// tile[i, j] = mult * x[b, t0 + i, h, j] for i < rows, j < cols (tile row-major, cols wide).
template <class In, class T>
inline void load_tile(const StepOperand& x, int64_t b, int64_t t0, int64_t h, int64_t rows,
                      int64_t cols, T mult, T* tile) {
  for (int64_t i = 0; i < rows; ++i) {
    const In* src = step_ptr<In>(x, b, t0 + i, h);
    T* dst = tile + i * cols;
    if (x.channel == 1) {
      for (int64_t j = 0; j < cols; ++j) dst[j] = mult * static_cast<T>(load(src + j));
    } else {
      for (int64_t j = 0; j < cols; ++j) dst[j] = mult * static_cast<T>(load(src + j * x.channel));
    }
  }
}
// One value per step and head: out[i] = x[b, t0 + i, h].
template <class In, class T>
inline void load_gate(const StepOperand& x, int64_t b, int64_t t0, int64_t h, int64_t rows,
                      T* out) {
  for (int64_t i = 0; i < rows; ++i) out[i] = static_cast<T>(load(step_ptr<In>(x, b, t0 + i, h)));
}
// load_tile, or zeros when x is absent (an optional gradient).
template <class In, class T>
inline void load_tile_or_zeros(const StepOperand& x, int64_t b, int64_t t0, int64_t h, int64_t rows,
                               int64_t cols, std::vector<T>& tile) {
  if (x.data != nullptr) {
    load_tile<In, T>(x, b, t0, h, rows, cols, T(1), tile.data());
  } else {
    std::fill(tile.begin(), tile.end(), T(0));
  }
}
// x[b, t0 + i, h, j] = mult * tile[i, j].
template <class In, class T>
inline void store_tile(const MutableStepOperand& x, int64_t b, int64_t t0, int64_t h,
                       int64_t rows, int64_t cols, T mult, const T* tile) {
  for (int64_t i = 0; i < rows; ++i) {
    In* dst = step_ptr<In>(x, b, t0 + i, h);
    const T* src = tile + i * cols;
    for (int64_t j = 0; j < cols; ++j) store(dst + j * x.channel, mult * src[j]);
  }
}
template <class In, class T>
inline void store_gate(const MutableStepOperand& x, int64_t b, int64_t t0, int64_t h,
                       int64_t rows, const T* in) {
  for (int64_t i = 0; i < rows; ++i) store(step_ptr<In>(x, b, t0 + i, h), in[i]);
}

// One segment of a (batch, head) pair's run (MatrixChunkShape::segment_bounds): steps [lo, hi),
// cut into chunks [lo + j C, min(lo + (j + 1) C, hi)) whose saved entering states are numbers
// first_chunk, first_chunk + 1, ...; `row` is the row of the state operands it starts from and
// ends in (the segment with segments, else the batch row).
struct SegmentSpan {
  int64_t lo = 0, hi = 0, first_chunk = 0, row = 0;
  int64_t chunks(int64_t C) const { return (hi - lo + C - 1) / C; }
};
// The segments of batch row b's run, in order; one spanning [0, time) without segments.
inline std::vector<SegmentSpan> segment_spans(const MatrixChunkShape& s, int64_t b) {
  if (s.segment_bounds == nullptr) return {SegmentSpan{0, s.time, 0, b}};
  std::vector<SegmentSpan> spans(static_cast<size_t>(s.segments));
  int64_t n = 0;
  for (int64_t i = 0; i < s.segments; ++i) {
    spans[static_cast<size_t>(i)] = SegmentSpan{s.segment_bounds[i], s.segment_bounds[i + 1], n, i};
    n += spans[static_cast<size_t>(i)].chunks(s.chunk);
  }
  return spans;
}

// One chunk of a run: steps [t0, t0 + steps), saved entering state number n, state row `row`;
// first / last: the first / last chunk of its segment (where the state starts from row `row`
// of the initial state, and where it is the segment's final state).
struct ChunkStep {
  int64_t t0 = 0, steps = 0, n = 0, row = 0;
  bool first = false, last = false;
};

// fn(step) for the chunks numbered [n0, n1) of batch row b's run, in order, or from the last
// with `reverse` (the backward's order). The one walk over segments and chunks that both
// recurrences' kernels use.
template <class Fn>
inline void for_each_chunk(const MatrixChunkShape& s, int64_t b, int64_t n0, int64_t n1,
                           bool reverse, const Fn& fn) {
  const int64_t C = s.chunk;
  const std::vector<SegmentSpan> spans = segment_spans(s, b);
  const int64_t count = static_cast<int64_t>(spans.size());
  for (int64_t i = 0; i < count; ++i) {
    const SegmentSpan& seg = spans[static_cast<size_t>(reverse ? count - 1 - i : i)];
    const int64_t chunks = seg.chunks(C);
    const int64_t j0 = std::max<int64_t>(0, n0 - seg.first_chunk);
    const int64_t j1 = std::min<int64_t>(chunks, n1 - seg.first_chunk);
    for (int64_t m = 0; m < j1 - j0; ++m) {
      const int64_t j = reverse ? j1 - 1 - m : j0 + m;
      ChunkStep step;
      step.t0 = seg.lo + j * C;
      step.steps = std::min(C, seg.hi - step.t0);
      step.n = seg.first_chunk + j;
      step.row = seg.row;
      step.first = j == 0;
      step.last = j == chunks - 1;
      fn(step);
    }
  }
}
// fn(row) for each segment of batch row b's run that has no steps (its final state is its
// initial state); without segments, the batch row when time is 0.
template <class Fn>
inline void for_each_empty_segment(const MatrixChunkShape& s, int64_t b, const Fn& fn) {
  for (const SegmentSpan& seg : segment_spans(s, b))
    if (seg.lo == seg.hi) fn(seg.row);
}
// Row `row`, head h of a (rows, heads, K, V) state operand, or nullptr when it is absent.
template <class T>
inline const T* state_ptr(const StateOperand& x, int64_t row, int64_t h) {
  return x.data == nullptr ? nullptr : static_cast<const T*>(x.data) + row * x.batch + h * x.head;
}
template <class T>
inline T* state_ptr(const MutableStateOperand& x, int64_t row, int64_t h) {
  return x.data == nullptr ? nullptr : static_cast<T*>(x.data) + row * x.batch + h * x.head;
}
// S = the state at `src` (K * V values), zeros when src is nullptr.
template <class T>
inline void load_state(const T* src, int64_t n, std::vector<T>& S) {
  if (src != nullptr) {
    std::copy_n(src, n, S.data());
  } else {
    std::fill(S.begin(), S.begin() + n, T(0));
  }
}

// Zeros the saved states past the run's chunks (shape.chunk_room() > shape.chunks() with segments).
template <class T>
inline void clear_spare_chunk_states(const MatrixChunkForwardParams& p, int64_t b, int64_t h) {
  const MatrixChunkShape& s = p.shape;
  const int64_t used = s.chunks(), room = s.chunk_room(), KV = s.key * s.value;
  if (p.chunk_states == nullptr || used == room) return;
  T* base = static_cast<T*>(p.chunk_states) + ((b * s.heads + h) * room + used) * KV;
  std::fill(base, base + (room - used) * KV, T(0));
}

template <class T>
inline T dot(const T* x, const T* y, int64_t n) {
  T s = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i] * y[i];
  return s;
}

// fn(In{}) with In the storage type of `kind` (float, double, BFloat16, Float16); throws
// std::invalid_argument naming `what` for any other kind.
template <class Fn>
inline void input_type_switch(ScalarKind kind, const char* what, const Fn& fn) {
  switch (kind) {
    case ScalarKind::kFloat32: return fn(float{});
    case ScalarKind::kFloat64: return fn(double{});
    case ScalarKind::kBFloat16: return fn(BFloat16{});
    case ScalarKind::kFloat16: return fn(Float16{});
    default: throw std::invalid_argument(std::string(what) + ": unsupported dtype");
  }
}

}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET
