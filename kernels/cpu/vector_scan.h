// In-register scan of one time-contiguous sequence with AVX-512: float and double, and
// bfloat16 / float16 storage widened to float lanes.
//
// When time is the unit-stride dimension, a sequence has no neighbouring channels to
// vectorize across, and a scalar recurrence is bound by the latency of one multiply-add per
// step. Here a vector holds V consecutive steps; their inclusive composition is computed in
// log2(V) shift-and-combine rounds (Kogge-Stone over the affine monoid), then
// h = A * h_in + B for all V steps at once, and the last lane carries into the next vector. The
// only loop-carried dependency is one FMA and one broadcast per V steps.
//
// kDir = -1 walks memory backwards (reverse scans, and the backward pass, which visits time
// from the end): loads and stores reverse the lanes so that lane order is always step order.
// Built only with AVX-512F; other machines use the engine's scalar multi-chain path.
#pragma once

#include "target.h"

#if defined(__AVX512F__)
#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "element_types.h"

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET::simd {

template <class T>
struct Vec;

template <>
struct Vec<float> {
  using type = __m512;
  static constexpr int kLanes = 16;
  static type set1(float x) { return _mm512_set1_ps(x); }
  static type loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void storeu(float* p, type v) { _mm512_storeu_ps(p, v); }
  static type reverse(type v) {
    return _mm512_permutexvar_ps(_mm512_set_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), v);
  }
  static type last(type v) { return _mm512_permutexvar_ps(_mm512_set1_epi32(15), v); }
  // Lane i gets v[i - s] for i >= s and fill[i] below.
  template <int s>
  static type shift_up(type v, type fill) {
    return _mm512_castsi512_ps(
        _mm512_alignr_epi32(_mm512_castps_si512(v), _mm512_castps_si512(fill), 16 - s));
  }
  static type mul(type x, type y) { return _mm512_mul_ps(x, y); }
  static type add(type x, type y) { return _mm512_add_ps(x, y); }
  static type fma(type x, type y, type z) { return _mm512_fmadd_ps(x, y, z); }
  static float lane0(type v) { return _mm512_cvtss_f32(v); }
};

template <>
struct Vec<double> {
  using type = __m512d;
  static constexpr int kLanes = 8;
  static type set1(double x) { return _mm512_set1_pd(x); }
  static type loadu(const double* p) { return _mm512_loadu_pd(p); }
  static void storeu(double* p, type v) { _mm512_storeu_pd(p, v); }
  static type reverse(type v) {
    return _mm512_permutexvar_pd(_mm512_set_epi64(0, 1, 2, 3, 4, 5, 6, 7), v);
  }
  static type last(type v) { return _mm512_permutexvar_pd(_mm512_set1_epi64(7), v); }
  template <int s>
  static type shift_up(type v, type fill) {
    return _mm512_castsi512_pd(
        _mm512_alignr_epi64(_mm512_castpd_si512(v), _mm512_castpd_si512(fill), 8 - s));
  }
  static type mul(type x, type y) { return _mm512_mul_pd(x, y); }
  static type add(type x, type y) { return _mm512_add_pd(x, y); }
  static type fma(type x, type y, type z) { return _mm512_fmadd_pd(x, y, z); }
  static double lane0(type v) { return _mm512_cvtsd_f64(v); }
};

// Storage types with a vector path, and their accumulation type.
template <class S>
constexpr bool kVectorStorage = std::is_same_v<S, float> || std::is_same_v<S, double> ||
                                std::is_same_v<S, BFloat16> || std::is_same_v<S, Float16>;

// V consecutive elements at p as accumulation-type lanes (16-bit types widen to float).
template <class S>
inline typename Vec<acc_t<S>>::type load_lanes(const S* p) {
  if constexpr (std::is_same_v<S, BFloat16>) {
    const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
  } else if constexpr (std::is_same_v<S, Float16>) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  } else {
    return Vec<S>::loadu(p);
  }
}

// Stores V lanes at p in the storage type, rounding to nearest even (bfloat16 keeps NaNs NaN).
template <class S>
inline void store_lanes(S* p, typename Vec<acc_t<S>>::type v) {
  if constexpr (std::is_same_v<S, BFloat16>) {
    const __m512i u = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(
        _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
    r = _mm512_mask_blend_epi32(nan, r, _mm512_or_si512(u, _mm512_set1_epi32(0x400000)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                        _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16)));
  } else if constexpr (std::is_same_v<S, Float16>) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                        _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  } else {
    Vec<S>::storeu(p, v);
  }
}

// V steps in step order starting at p (kDir = +1) or ending at p (kDir = -1, p is step 0).
template <class S, int kDir>
inline typename Vec<acc_t<S>>::type load_steps(const S* p) {
  using V = Vec<acc_t<S>>;
  if constexpr (kDir > 0) return load_lanes(p);
  return V::reverse(load_lanes(p - (V::kLanes - 1)));
}
template <class S, int kDir>
inline void store_steps(S* p, typename Vec<acc_t<S>>::type v) {
  using V = Vec<acc_t<S>>;
  if constexpr (kDir > 0)
    store_lanes(p, v);
  else
    store_lanes(p - (V::kLanes - 1), V::reverse(v));
}

// Inclusive composition of the V steps (A_i, B_i) = P_i o ... o P_0 in place.
template <class T>
inline void compose_steps(typename Vec<T>::type& A, typename Vec<T>::type& B) {
  using V = Vec<T>;
  const auto one = V::set1(T(1)), zero = V::set1(T(0));
  auto round = [&](auto As, auto Bs) {
    B = V::fma(A, Bs, B);
    A = V::mul(A, As);
  };
  round(V::template shift_up<1>(A, one), V::template shift_up<1>(B, zero));
  round(V::template shift_up<2>(A, one), V::template shift_up<2>(B, zero));
  round(V::template shift_up<4>(A, one), V::template shift_up<4>(B, zero));
  if constexpr (V::kLanes == 16)
    round(V::template shift_up<8>(A, one), V::template shift_up<8>(B, zero));
}

}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET::simd
#endif
