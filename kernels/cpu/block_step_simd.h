// One step of the 2x2 block scan (block_forward_policy.h) and of its backward
// (block_backward_policy.h) on 2-lane double vectors, for float32 and float64 storage: a state,
// lam, and each row or column of A fit one vector, so a backward step is about 20 instructions
// where the scalar step, with a float-to-double conversion per element, took about 45 (perf
// annotate of seqpar-bench block_scan, avx2). The time-inner chains (forward and backward), the
// backward's channel loops, and the forward's on 128-bit targets use it; with 256-bit vectors
// or wider the forward's channel loops take several channels per vector instead
// (block_lanes_simd.h). Written once with Highway for every fixed-width
// target (SSE4 as the x86 baseline, AVX2, AVX-512, NEON); SVE's sizeless vectors cannot be
// held in the chains' arrays, so the SVE targets and builds without Highway keep the scalar
// step (kVectorStep is false there).
#pragma once

#include "target.h"

#include <type_traits>

#include "element_types.h"

#if defined(SEQPAR_HAVE_HWY)
#include <hwy/highway.h>

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET::block_simd {

namespace hn = hwy::HWY_NAMESPACE;

// Every SVE target's vectors are sizeless, the fixed 256-bit one's too: no arrays of them.
constexpr bool kSveTarget =
    (HWY_TARGET & (HWY_SVE | HWY_SVE2 | HWY_SVE_256 | HWY_SVE2_128)) != 0;
template <class S>
constexpr bool kVectorStep = !HWY_HAVE_SCALABLE && !kSveTarget && HWY_LANES(double) >= 2 &&
                             (std::is_same_v<S, float> || std::is_same_v<S, double>);

using D2 = hn::FixedTag<double, 2>;
using V2 = hn::Vec<D2>;
using F2 = hn::FixedTag<float, 2>;
using F4 = hn::FixedTag<float, 4>;

// One vector per chain; dependent on S, so that where the vector step is off (SVE) the array
// is never formed.
template <class S, int kN>
using ChainVectors = std::enable_if_t<kVectorStep<S>, V2>[kN];

// A 2-vector at p (x, y) in double lanes, and back in the storage type.
template <class S>
HWY_INLINE V2 load2(const S* p) {
  if constexpr (std::is_same_v<S, float>)
    return hn::PromoteTo(D2(), hn::LoadU(F2(), p));
  else
    return hn::LoadU(D2(), p);
}
template <class S>
HWY_INLINE void store2(S* p, V2 v) {
  if constexpr (std::is_same_v<S, float>)
    hn::StoreU(hn::DemoteTo(F2(), v), F2(), p);
  else
    hn::StoreU(v, D2(), p);
}

// The rows of a row-major 2x2 map at p; kLower: A[0][1] is not read (the top row is [m00, 0]).
template <bool kLower, class S>
HWY_INLINE void load_rows(const S* p, V2& top, V2& bottom) {
  if constexpr (std::is_same_v<S, float>) {
    const auto a = hn::LoadU(F4(), p);
    top = hn::PromoteTo(D2(), hn::LowerHalf(F2(), a));
    bottom = hn::PromoteTo(D2(), hn::UpperHalf(F2(), a));
  } else {
    top = hn::LoadU(D2(), p);
    bottom = hn::LoadU(D2(), p + 2);
  }
  if constexpr (kLower) top = hn::InterleaveLower(D2(), top, hn::Zero(D2()));
}
template <class S>
HWY_INLINE void store_rows(S* p, V2 top, V2 bottom) {
  if constexpr (std::is_same_v<S, float>) {
    hn::StoreU(hn::Combine(F4(), hn::DemoteTo(F2(), bottom), hn::DemoteTo(F2(), top)), F4(), p);
  } else {
    hn::StoreU(top, D2(), p);
    hn::StoreU(bottom, D2(), p + 2);
  }
}

// a v for a 2x2 map a given by its columns: v.x * col0 + v.y * col1.
HWY_INLINE V2 apply(V2 col0, V2 col1, V2 v) {
  return hn::MulAdd(col0, hn::DupEven(v), hn::Mul(col1, hn::DupOdd(v)));
}
HWY_INLINE V2 column0(V2 top, V2 bottom) { return hn::InterleaveLower(D2(), top, bottom); }
HWY_INLINE V2 column1(V2 top, V2 bottom) { return hn::InterleaveUpper(D2(), top, bottom); }
// M <- a M for the row-major 2x2 map at pM (double), a given by its rows: row i of the result is
// a[i][0] M.row0 + a[i][1] M.row1.
HWY_INLINE void compose_onto(V2 row0, V2 row1, double* pM) {
  const V2 m0 = hn::LoadU(D2(), pM);
  const V2 m1 = hn::LoadU(D2(), pM + 2);
  hn::StoreU(apply(m0, m1, row0), D2(), pM);
  hn::StoreU(apply(m0, m1, row1), D2(), pM + 2);
}

// A v + b for A given by its rows: v.x * (first column) + v.y * (second column) + b.
HWY_INLINE V2 affine(V2 top, V2 bottom, V2 v, V2 b) {
  return hn::MulAdd(column0(top, bottom), hn::DupEven(v),
                    hn::MulAdd(column1(top, bottom), hn::DupOdd(v), b));
}

// h' = A h + b = h.x * (first column) + h.y * (second column) + b, stored at ph; kLower:
// A[0][1] is taken as zero.
template <bool kLower, class S>
HWY_INLINE V2 forward_step(const S* pA, const S* pb, S* ph, V2 h) {
  V2 top, bottom;
  load_rows<kLower>(pA, top, bottom);
  const V2 v = affine(top, bottom, h, load2(pb));
  store2(ph, v);
  return v;
}
// The forward's summary, one step on: M <- A M, E <- A E + b (pM row-major, pE a 2-vector).
template <bool kLower, class S>
HWY_INLINE void forward_aggregate_step(const S* pA, const S* pb, double* pM, double* pE) {
  V2 top, bottom;
  load_rows<kLower>(pA, top, bottom);
  compose_onto(top, bottom, pM);
  hn::StoreU(affine(top, bottom, hn::LoadU(D2(), pE), load2(pb)), D2(), pE);
}
// The backward's summary, one step on: M <- A^T M, E <- A^T (E + g). The rows of A^T are A's
// columns, and A^T v is v.x * (top row) + v.y * (bottom row).
template <bool kLower, class S>
HWY_INLINE void backward_aggregate_step(const S* pA, const S* pg, double* pM, double* pE) {
  V2 top, bottom;
  load_rows<kLower>(pA, top, bottom);
  compose_onto(column0(top, bottom), column1(top, bottom), pM);
  const V2 v = hn::Add(hn::LoadU(D2(), pE), load2(pg));
  hn::StoreU(apply(top, bottom, v), D2(), pE);
}

// lam = g + u; grad_b = lam; grad_A = lam h_{t-1}^T (kLower: [0][1] written as zero); returns
// u' = A^T lam = lam.x * (top row) + lam.y * (bottom row).
template <bool kLower, class S>
HWY_INLINE V2 backward_step(const S* pA, const S* pg, const S* php, S* pgA, S* pgb, V2 u) {
  const V2 lam = hn::Add(load2(pg), u);
  store2(pgb, lam);
  const V2 lx = hn::DupEven(lam);
  const V2 ly = hn::DupOdd(lam);
  const V2 hp = load2(php);
  V2 row0 = hn::Mul(lx, hp);
  if constexpr (kLower) row0 = hn::InterleaveLower(D2(), row0, hn::Zero(D2()));
  store_rows(pgA, row0, hn::Mul(ly, hp));
  V2 top, bottom;
  load_rows<kLower>(pA, top, bottom);
  return hn::MulAdd(top, lx, hn::Mul(bottom, ly));  // apply(top, bottom, lam), lx / ly reused
}

}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET::block_simd

#else

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET::block_simd {
template <class S>
constexpr bool kVectorStep = false;
}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET::block_simd

#endif
