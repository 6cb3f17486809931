// The forward block scan's channel-inner steps (block_forward_policy.h) across channels: one
// full-width double vector holds one component (x, y, a00, ...) of as many neighbouring channels
// as it has lanes (8 on AVX-512, 4 on AVX2). The packed operands are split into components as
// they are loaded (LoadInterleaved4 for A, LoadInterleaved2 for b) and joined as h is stored;
// the states live in per-component scratch arrays (struct of arrays) for the whole time range of
// a call, so the engine's interleaved states are converted once per tile, not once per step.
//
// Why: with two threads sharing one long sequence, most look-back tiles are summarized and then
// run from cache, and with one channel per 2-lane vector (block_step_simd.h) both passes were
// bound by instructions: per tile of (1, 2^20, 64) a summary took 75 us and a run from cache
// 52 us, 59 and 40 us with these loops (docs/block_scan.md, "Two threads on one sequence").
// float32 and float64 storage on AVX2 and AVX-512 (kWideLanes); lanes left over at the end of
// a block take a scalar step with the same operation order.
//
// The forward's time-inner chains take four chains per pair of 256-bit vectors here too
// (forward_chain_quads, float32 storage). The 2-lane step converts its six float32 inputs and
// two outputs two lanes at a time, and those conversions cost about as much as the recurrence:
// in cache, 1.15-1.21 ns a chain-step against 0.77-0.80 for the same step on float64 storage,
// and 0.89 for the float32 step's loads and conversions alone (AMD EPYC VM, 2026-12-07,
// docs/results/block_chain_step_micro.cpp). The quads convert four lanes at a time.
#pragma once

#include "target.h"

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "block_step_simd.h"

#if defined(SEQPAR_HAVE_HWY)

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET::block_lanes {

namespace hn = hwy::HWY_NAMESPACE;

// Only with vectors of 256 bits or more: on 128-bit targets two channels per vector lost to
// one channel per 2-lane vector (the SSE4 baseline, (1, 2^20, 64), one thread: 16.2-16.7
// against 20.4-20.5 GB/s; docs/block_scan.md).
template <class S>
constexpr bool kWideLanes = block_simd::kVectorStep<S> && HWY_MAX_BYTES >= 32;

using DD = hn::ScalableTag<double>;
using VD = hn::Vec<DD>;

// Per-thread scratch for the struct-of-arrays states of one call (at least n doubles).
inline double* scratch(size_t n) {
  thread_local std::vector<double> buffer;
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

// The components of Lanes(DD) packed row-major 2x2 maps at p, in double lanes.
template <class S>
HWY_INLINE void load_maps(const S* p, VD& a00, VD& a01, VD& a10, VD& a11) {
  const DD dd;
  if constexpr (std::is_same_v<S, float>) {
    const hn::Rebind<float, DD> df;
    hn::Vec<decltype(df)> f00, f01, f10, f11;
    hn::LoadInterleaved4(df, p, f00, f01, f10, f11);
    a00 = hn::PromoteTo(dd, f00);
    a01 = hn::PromoteTo(dd, f01);
    a10 = hn::PromoteTo(dd, f10);
    a11 = hn::PromoteTo(dd, f11);
  } else {
    hn::LoadInterleaved4(dd, p, a00, a01, a10, a11);
  }
}
// The components of Lanes(DD) packed 2-vectors at p, and back.
template <class S>
HWY_INLINE void load_vecs(const S* p, VD& x, VD& y) {
  const DD dd;
  if constexpr (std::is_same_v<S, float>) {
    const hn::Rebind<float, DD> df;
    hn::Vec<decltype(df)> fx, fy;
    hn::LoadInterleaved2(df, p, fx, fy);
    x = hn::PromoteTo(dd, fx);
    y = hn::PromoteTo(dd, fy);
  } else {
    hn::LoadInterleaved2(dd, p, x, y);
  }
}
template <class S>
HWY_INLINE void store_vecs(S* p, VD x, VD y) {
  const DD dd;
  if constexpr (std::is_same_v<S, float>) {
    const hn::Rebind<float, DD> df;
    hn::StoreInterleaved2(hn::DemoteTo(df, x), hn::DemoteTo(df, y), df, p);
  } else {
    hn::StoreInterleaved2(x, y, dd, p);
  }
}

// One step of lanes [l0, l1): h = A h + b, stored at ph (packed 2-vectors); the states in
// x[], y[]. kLower: A[0][1] is taken as zero.
template <bool kLower, class S>
HWY_INLINE void forward_run(const S* __restrict pA, const S* __restrict pb, S* __restrict ph,
                            double* __restrict x, double* __restrict y, int l0, int l1) {
  const DD dd;
  const int N = static_cast<int>(hn::Lanes(dd));
  int l = l0;
  for (; l + N <= l1; l += N) {
    VD a00, a01, a10, a11, b0, b1;
    load_maps(pA + 4 * l, a00, a01, a10, a11);
    load_vecs(pb + 2 * l, b0, b1);
    const VD vx = hn::LoadU(dd, x + l), vy = hn::LoadU(dd, y + l);
    const VD nx = kLower ? hn::MulAdd(a00, vx, b0) : hn::MulAdd(a00, vx, hn::MulAdd(a01, vy, b0));
    const VD ny = hn::MulAdd(a10, vx, hn::MulAdd(a11, vy, b1));
    hn::StoreU(nx, dd, x + l);
    hn::StoreU(ny, dd, y + l);
    store_vecs(ph + 2 * l, nx, ny);
  }
  for (; l < l1; ++l) {
    const S* a = pA + 4 * l;
    const double a01 = kLower ? 0.0 : double(load(a + 1));
    const double nx = double(load(a)) * x[l] + (a01 * y[l] + double(load(pb + 2 * l)));
    const double ny =
        double(load(a + 2)) * x[l] + (double(load(a + 3)) * y[l] + double(load(pb + 2 * l + 1)));
    x[l] = nx;
    y[l] = ny;
    store(ph + 2 * l, nx);
    store(ph + 2 * l + 1, ny);
  }
}

// One step of the forward's summary for lanes [l0, l1): M <- A M, E <- A E + b, with M's
// components in m[0..3] (row-major) and E's in e[0..1], each an array over lanes.
template <bool kLower, class S>
HWY_INLINE void forward_aggregate(const S* __restrict pA, const S* __restrict pb,
                                  double* const* __restrict m, double* const* __restrict e,
                                  int l0, int l1) {
  const DD dd;
  const int N = static_cast<int>(hn::Lanes(dd));
  double* __restrict m00 = m[0];
  double* __restrict m01 = m[1];
  double* __restrict m10 = m[2];
  double* __restrict m11 = m[3];
  double* __restrict ex = e[0];
  double* __restrict ey = e[1];
  int l = l0;
  for (; l + N <= l1; l += N) {
    VD a00, a01, a10, a11, b0, b1;
    load_maps(pA + 4 * l, a00, a01, a10, a11);
    if constexpr (kLower) a01 = hn::Zero(dd);
    load_vecs(pb + 2 * l, b0, b1);
    const VD p00 = hn::LoadU(dd, m00 + l), p01 = hn::LoadU(dd, m01 + l);
    const VD p10 = hn::LoadU(dd, m10 + l), p11 = hn::LoadU(dd, m11 + l);
    const VD vx = hn::LoadU(dd, ex + l), vy = hn::LoadU(dd, ey + l);
    hn::StoreU(hn::MulAdd(a00, p00, hn::Mul(a01, p10)), dd, m00 + l);
    hn::StoreU(hn::MulAdd(a00, p01, hn::Mul(a01, p11)), dd, m01 + l);
    hn::StoreU(hn::MulAdd(a10, p00, hn::Mul(a11, p10)), dd, m10 + l);
    hn::StoreU(hn::MulAdd(a10, p01, hn::Mul(a11, p11)), dd, m11 + l);
    hn::StoreU(hn::MulAdd(a00, vx, hn::MulAdd(a01, vy, b0)), dd, ex + l);
    hn::StoreU(hn::MulAdd(a10, vx, hn::MulAdd(a11, vy, b1)), dd, ey + l);
  }
  for (; l < l1; ++l) {
    const S* a = pA + 4 * l;
    const double a00 = load(a), a01 = kLower ? 0.0 : double(load(a + 1));
    const double a10 = load(a + 2), a11 = load(a + 3);
    const double p00 = m00[l], p01 = m01[l], p10 = m10[l], p11 = m11[l];
    const double vx = ex[l], vy = ey[l];
    m00[l] = a00 * p00 + a01 * p10;
    m01[l] = a00 * p01 + a01 * p11;
    m10[l] = a10 * p00 + a11 * p10;
    m11[l] = a10 * p01 + a11 * p11;
    ex[l] = a00 * vx + (a01 * vy + double(load(pb + 2 * l)));
    ey[l] = a10 * vx + (a11 * vy + double(load(pb + 2 * l + 1)));
  }
}

// ---- time-inner chains, four at a time -----------------------------------------------------
// Four chains' states in the lanes of two 256-bit double vectors (their x, their y). Each step
// loads each chain's A (4 floats) and b (2), transposes them into components, and splits h back
// to the chains as it is stored, with the 2-lane step's operation order (the same results).
// 1.03-1.05 ns a chain-step in cache against the 2-lane step's 1.15-1.21; in the library, 64 x
// 2^16 x 1 at one thread 5-7% faster on average over alternating rounds (docs/block_scan.md).
// float32 storage on the targets with 256-bit vectors (AVX2, AVX-512); not on SVE, whose
// sizeless vectors cannot be held in the arrays below (SVE keeps the scalar chain step,
// block_step_simd.h).
#if HWY_MAX_BYTES >= 32 && HWY_TARGET != HWY_SVE && HWY_TARGET != HWY_SVE2 && \
    HWY_TARGET != HWY_SVE_256 && HWY_TARGET != HWY_SVE2_128
template <class S>
constexpr bool kWideChains = kWideLanes<S> && std::is_same_v<S, float>;

using D4 = hn::FixedTag<double, 4>;
using V4 = hn::Vec<D4>;

// One step of four chains: h = A h + b for chain c at pA[c], pb[c], ph[c]; x, y hold the four
// states' components (lane c: chain c).
template <bool kLower>
HWY_INLINE void forward_quad_step(const float* const* pA, const float* const* pb,
                                  float* const* ph, V4& x, V4& y) {
  using F4 = block_simd::F4;
  using F2 = block_simd::F2;
  const F4 f4;
  const F2 f2;
  const D4 d4;
  // Rows r_c = (a00, a01, a10, a11) of chain c -> columns (component k of the four chains).
  const auto r0 = hn::LoadU(f4, pA[0]), r1 = hn::LoadU(f4, pA[1]);
  const auto r2 = hn::LoadU(f4, pA[2]), r3 = hn::LoadU(f4, pA[3]);
  const auto t0 = hn::InterleaveLower(f4, r0, r1), t1 = hn::InterleaveLower(f4, r2, r3);
  const auto t2 = hn::InterleaveUpper(f4, r0, r1), t3 = hn::InterleaveUpper(f4, r2, r3);
  const V4 a00 = hn::PromoteTo(d4, hn::ConcatLowerLower(f4, t1, t0));
  const V4 a10 = hn::PromoteTo(d4, hn::ConcatLowerLower(f4, t3, t2));
  const V4 a11 = hn::PromoteTo(d4, hn::ConcatUpperUpper(f4, t3, t2));
  // b: (x, y) of chains 0, 1 and of 2, 3, then the even and the odd lanes.
  const auto b01 = hn::Combine(f4, hn::LoadU(f2, pb[1]), hn::LoadU(f2, pb[0]));
  const auto b23 = hn::Combine(f4, hn::LoadU(f2, pb[3]), hn::LoadU(f2, pb[2]));
  const V4 bx = hn::PromoteTo(d4, hn::ConcatEven(f4, b23, b01));
  const V4 by = hn::PromoteTo(d4, hn::ConcatOdd(f4, b23, b01));
  V4 nx;
  if constexpr (kLower) {
    nx = hn::MulAdd(a00, x, bx);
  } else {
    const V4 a01 = hn::PromoteTo(d4, hn::ConcatUpperUpper(f4, t1, t0));
    nx = hn::MulAdd(a00, x, hn::MulAdd(a01, y, bx));
  }
  const V4 ny = hn::MulAdd(a10, x, hn::MulAdd(a11, y, by));
  x = nx;
  y = ny;
  // (x, y) pairs of chains 0, 1 and of 2, 3, each stored as two floats.
  const auto fx = hn::DemoteTo(f4, nx), fy = hn::DemoteTo(f4, ny);
  const auto h01 = hn::InterleaveLower(f4, fx, fy), h23 = hn::InterleaveUpper(f4, fx, fy);
  hn::StoreU(hn::LowerHalf(f2, h01), f2, ph[0]);
  hn::StoreU(hn::UpperHalf(f2, h01), f2, ph[1]);
  hn::StoreU(hn::LowerHalf(f2, h23), f2, ph[2]);
  hn::StoreU(hn::UpperHalf(f2, h23), f2, ph[3]);
}

// 4 * kQuads chains of len steps from pA[c], pb[c], ph[c] (time strides sA, sb, sh), the
// states' components in x[c], y[c] (in and out).
template <bool kLower, int kQuads>
HWY_INLINE void forward_chain_quads(const float* const* pA, const float* const* pb,
                                    float* const* ph, int64_t sA, int64_t sb, int64_t sh,
                                    int64_t len, double* x, double* y) {
  const D4 d4;
  V4 vx[kQuads], vy[kQuads];
  for (int q = 0; q < kQuads; ++q) {
    vx[q] = hn::LoadU(d4, x + 4 * q);
    vy[q] = hn::LoadU(d4, y + 4 * q);
  }
  for (int64_t i = 0; i < len; ++i)
    for (int q = 0; q < kQuads; ++q) {
      const float* a[4];
      const float* b[4];
      float* h[4];
      for (int c = 0; c < 4; ++c) {
        a[c] = pA[4 * q + c] + i * sA;
        b[c] = pb[4 * q + c] + i * sb;
        h[c] = ph[4 * q + c] + i * sh;
      }
      forward_quad_step<kLower>(a, b, h, vx[q], vy[q]);
    }
  for (int q = 0; q < kQuads; ++q) {
    hn::StoreU(vx[q], d4, x + 4 * q);
    hn::StoreU(vy[q], d4, y + 4 * q);
  }
}
#else
template <class S>
constexpr bool kWideChains = false;
// Declared for the policy's discarded branch (kWideChains is false here); never defined.
template <bool kLower, int kQuads>
void forward_chain_quads(const float* const*, const float* const*, float* const*, int64_t,
                         int64_t, int64_t, int64_t, double*, double*);
#endif

}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET::block_lanes

#else

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET::block_lanes {
template <class S>
constexpr bool kWideLanes = false;
template <class S>
constexpr bool kWideChains = false;
// Declared for the policy's discarded branch (kWideChains is false here); never defined.
template <bool kLower, int kQuads>
void forward_chain_quads(const float* const*, const float* const*, float* const*, int64_t,
                         int64_t, int64_t, int64_t, double*, double*);
}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET::block_lanes

#endif
