// In-register scan of one time-contiguous sequence with AVX-512, for float and double.
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

#if defined(__AVX512F__)
#include <immintrin.h>

#include <cstdint>

namespace seqpar::kernels::cpu::simd {

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

// V steps in step order starting at p (kDir = +1) or ending at p (kDir = -1, p is step 0).
template <class T, int kDir>
inline typename Vec<T>::type load_steps(const T* p) {
  using V = Vec<T>;
  if constexpr (kDir > 0) return V::loadu(p);
  return V::reverse(V::loadu(p - (V::kLanes - 1)));
}
template <class T, int kDir>
inline void store_steps(T* p, typename Vec<T>::type v) {
  using V = Vec<T>;
  if constexpr (kDir > 0)
    V::storeu(p, v);
  else
    V::storeu(p - (V::kLanes - 1), V::reverse(v));
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

}  // namespace seqpar::kernels::cpu::simd
#endif
