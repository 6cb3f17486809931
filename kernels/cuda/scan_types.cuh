// Element types, accumulation types and the affine-map monoid used by every CUDA scan kernel.
//
// Storage types are what lives in memory (float, double, __nv_bfloat16, __half, float2 for
// complex64). Loaded elements are held as Val (float, double, float, float, CFloat: the
// storage widened to at least float, at the storage's register cost), and every operation
// that carries state is done in the accumulation type Acc (double, double, float, float,
// CDouble). float32 and complex64 accumulate in double so that the error of a scan does not
// grow with the sequence length (docs/accuracy.md); 16-bit storage keeps float, whose error
// stays far below the storage's own rounding. An affine map x -> A*x + B is the propagator of
// one or many steps; `compose(later, earlier)` is the monoid operation. Everything here is a
// header so that each per-dtype translation unit inlines it.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "seqpar/kernels/scan_params.h"

namespace seqpar::kernels::cuda::detail {

// Complex values in registers. Plain structs (not cuda::std::complex) so that the multiply is
// the textbook four-product form without NaN/inf recovery branches.
template <class T>
struct Complex {
  T re, im;
};
using CFloat = Complex<float>;
using CDouble = Complex<double>;
template <class T>
__device__ __forceinline__ Complex<T> operator*(Complex<T> x, Complex<T> y) {
  return {x.re * y.re - x.im * y.im, x.re * y.im + x.im * y.re};
}
template <class T>
__device__ __forceinline__ Complex<T> operator+(Complex<T> x, Complex<T> y) {
  return {x.re + y.re, x.im + y.im};
}

// The accumulation type of each AccumulationKind; which kind a storage type accumulates in is
// the table accumulation_kind (scan_params.h).
template <AccumulationKind K>
struct AccumulationType;
template <>
struct AccumulationType<AccumulationKind::kFloat32> {
  using type = float;
};
template <>
struct AccumulationType<AccumulationKind::kFloat64> {
  using type = double;
};
template <>
struct AccumulationType<AccumulationKind::kComplex128> {
  using type = CDouble;
};
template <ScalarKind K>
using accumulation_of_kind = typename AccumulationType<accumulation_kind(K)>::type;

template <class S>
struct Traits;
template <>
struct Traits<float> {
  using Val = float;
  using Acc = accumulation_of_kind<ScalarKind::kFloat32>;
};
template <>
struct Traits<double> {
  using Val = double;
  using Acc = accumulation_of_kind<ScalarKind::kFloat64>;
};
template <>
struct Traits<__nv_bfloat16> {
  using Val = float;
  using Acc = accumulation_of_kind<ScalarKind::kBFloat16>;
};
template <>
struct Traits<__half> {
  using Val = float;
  using Acc = accumulation_of_kind<ScalarKind::kFloat16>;
};
template <>
struct Traits<float2> {
  using Val = CFloat;
  using Acc = accumulation_of_kind<ScalarKind::kComplex64>;
};

template <class T>
__device__ __forceinline__ T acc_one();
template <>
__device__ __forceinline__ float acc_one<float>() { return 1.f; }
template <>
__device__ __forceinline__ double acc_one<double>() { return 1.0; }
template <>
__device__ __forceinline__ CFloat acc_one<CFloat>() { return {1.f, 0.f}; }
template <>
__device__ __forceinline__ CDouble acc_one<CDouble>() { return {1.0, 0.0}; }

template <class T>
__device__ __forceinline__ T acc_zero();
template <>
__device__ __forceinline__ float acc_zero<float>() { return 0.f; }
template <>
__device__ __forceinline__ double acc_zero<double>() { return 0.0; }
template <>
__device__ __forceinline__ CFloat acc_zero<CFloat>() { return {0.f, 0.f}; }
template <>
__device__ __forceinline__ CDouble acc_zero<CDouble>() { return {0.0, 0.0}; }

__device__ __forceinline__ float conj_of(float x) { return x; }
__device__ __forceinline__ double conj_of(double x) { return x; }
template <class T>
__device__ __forceinline__ Complex<T> conj_of(Complex<T> x) { return {x.re, -x.im}; }

// Storage -> Val.
__device__ __forceinline__ float to_val(float x) { return x; }
__device__ __forceinline__ double to_val(double x) { return x; }
__device__ __forceinline__ float to_val(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_val(__half x) { return __half2float(x); }
__device__ __forceinline__ CFloat to_val(float2 x) { return {x.x, x.y}; }

// Val -> Acc (exact).
template <class Acc>
__device__ __forceinline__ Acc widen(float x) { return Acc(x); }
template <class Acc>
__device__ __forceinline__ Acc widen(double x) { return x; }
template <class Acc>
__device__ __forceinline__ Acc widen(CFloat x) {
  if constexpr (std::is_same_v<Acc, CDouble>) {
    return {x.re, x.im};
  } else {
    return x;
  }
}

// Storage -> Acc.
template <class S>
__device__ __forceinline__ typename Traits<S>::Acc to_acc(S x) {
  return widen<typename Traits<S>::Acc>(to_val(x));
}

// Acc -> storage, rounding to nearest even (a plain conversion is cvt.rn).
template <class S>
__device__ __forceinline__ S from_acc(typename Traits<S>::Acc x);
template <>
__device__ __forceinline__ float from_acc<float>(double x) { return static_cast<float>(x); }
template <>
__device__ __forceinline__ double from_acc<double>(double x) { return x; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <>
__device__ __forceinline__ __half from_acc<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ float2 from_acc<float2>(CDouble x) {
  return make_float2(static_cast<float>(x.re), static_cast<float>(x.im));
}

constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float shfl_up(float x, int d) { return __shfl_up_sync(kFullMask, x, d); }
__device__ __forceinline__ double shfl_up(double x, int d) { return __shfl_up_sync(kFullMask, x, d); }
template <class T>
__device__ __forceinline__ Complex<T> shfl_up(Complex<T> x, int d) {
  return {__shfl_up_sync(kFullMask, x.re, d), __shfl_up_sync(kFullMask, x.im, d)};
}
__device__ __forceinline__ float shfl_down(float x, int d) { return __shfl_down_sync(kFullMask, x, d); }
__device__ __forceinline__ double shfl_down(double x, int d) { return __shfl_down_sync(kFullMask, x, d); }
template <class T>
__device__ __forceinline__ Complex<T> shfl_down(Complex<T> x, int d) {
  return {__shfl_down_sync(kFullMask, x.re, d), __shfl_down_sync(kFullMask, x.im, d)};
}
__device__ __forceinline__ float shfl_idx(float x, int src) { return __shfl_sync(kFullMask, x, src); }
__device__ __forceinline__ double shfl_idx(double x, int src) { return __shfl_sync(kFullMask, x, src); }
template <class T>
__device__ __forceinline__ Complex<T> shfl_idx(Complex<T> x, int src) {
  return {__shfl_sync(kFullMask, x.re, src), __shfl_sync(kFullMask, x.im, src)};
}

// Affine map x -> A*x + B. Aligned to its size (at most 16 bytes) so that 8- or 16-byte
// accesses move it.
template <class Acc>
struct alignas(2 * sizeof(Acc) < 16 ? 2 * sizeof(Acc) : 16) Map {
  Acc A, B;
};

template <class Acc>
__device__ __forceinline__ Map<Acc> identity_map() {
  return {acc_one<Acc>(), acc_zero<Acc>()};
}
// later o earlier: apply `earlier` first.
template <class Acc>
__device__ __forceinline__ Map<Acc> compose(const Map<Acc>& later, const Map<Acc>& earlier) {
  return {later.A * earlier.A, later.A * earlier.B + later.B};
}
template <class Acc>
__device__ __forceinline__ Acc apply(const Map<Acc>& m, Acc x) {
  return m.A * x + m.B;
}
template <class Acc>
__device__ __forceinline__ Map<Acc> shfl_up(const Map<Acc>& m, int d) {
  return {shfl_up(m.A, d), shfl_up(m.B, d)};
}
template <class Acc>
__device__ __forceinline__ Map<Acc> shfl_down(const Map<Acc>& m, int d) {
  return {shfl_down(m.A, d), shfl_down(m.B, d)};
}
template <class Acc>
__device__ __forceinline__ Map<Acc> shfl_idx(const Map<Acc>& m, int src) {
  return {shfl_idx(m.A, src), shfl_idx(m.B, src)};
}

// Look-back scratch is written by one CTA and read by another while both run, so it goes
// through L2 only (.cg): L1 is not coherent across SMs.
template <class Acc>
__device__ __forceinline__ void store_cg(Map<Acc>* p, const Map<Acc>& m) {
  if constexpr (sizeof(Map<Acc>) == 8) {
    float2 v;
    std::memcpy(&v, &m, 8);
    __stcg(reinterpret_cast<float2*>(p), v);
  } else {
    static_assert(sizeof(Map<Acc>) % 16 == 0, "maps move in 16-byte pieces");
#pragma unroll
    for (int i = 0; i < int(sizeof(Map<Acc>) / 16); ++i) {
      float4 v;
      std::memcpy(&v, reinterpret_cast<const char*>(&m) + 16 * i, 16);
      __stcg(reinterpret_cast<float4*>(p) + i, v);
    }
  }
}
template <class Acc>
__device__ __forceinline__ Map<Acc> load_cg(const Map<Acc>* p) {
  Map<Acc> m;
  if constexpr (sizeof(Map<Acc>) == 8) {
    float2 v = __ldcg(reinterpret_cast<const float2*>(p));
    std::memcpy(&m, &v, 8);
  } else {
#pragma unroll
    for (int i = 0; i < int(sizeof(Map<Acc>) / 16); ++i) {
      float4 v = __ldcg(reinterpret_cast<const float4*>(p) + i);
      std::memcpy(reinterpret_cast<char*>(&m) + 16 * i, &v, 16);
    }
  }
  return m;
}

}  // namespace seqpar::kernels::cuda::detail
