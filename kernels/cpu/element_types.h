// Storage and accumulation types of the CPU kernels, without torch headers.
//
// bfloat16 and float16 are stored as raw 16-bit patterns and converted with bit arithmetic
// (round to nearest even), which the compiler vectorizes. Complex values use a two-float
// struct with the textbook product: std::complex's operator* checks for inf/NaN on every
// multiply (Annex G), which costs more than the whole scan step.
#pragma once

#include "seqpar/kernels/scan_params.h"
#include "target.h"

#include <cstdint>
#include <cstring>

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET {

struct BFloat16 {
  uint16_t bits;
};
struct Float16 {
  uint16_t bits;
};

template <class T>
struct Complex {
  T re, im;
};
template <class T>
inline Complex<T> operator+(Complex<T> x, Complex<T> y) { return {x.re + y.re, x.im + y.im}; }
template <class T>
inline Complex<T> operator*(Complex<T> x, Complex<T> y) {
  return {x.re * y.re - x.im * y.im, x.re * y.im + x.im * y.re};
}
template <class T>
inline Complex<T> conj(Complex<T> x) { return {x.re, -x.im}; }
inline float conj(float x) { return x; }
inline double conj(double x) { return x; }

inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float to_float(BFloat16 x) { return bits_to_float(static_cast<uint32_t>(x.bits) << 16); }
// Branch-free (a select, not a jump) so that loops storing bfloat16 vectorize.
inline BFloat16 to_bfloat16(float f) {
  const uint32_t u = float_to_bits(f);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint32_t quiet_nan = (u >> 16) | 0x40u;
  const bool is_nan = (u & 0x7fffffffu) > 0x7f800000u;
  return {static_cast<uint16_t>(is_nan ? quiet_nan : rounded)};
}

#if defined(__F16C__)
// With F16C the compiler converts (and vectorizes) through the _Float16 type: vcvtph2ps /
// vcvtps2ph, round to nearest even.
inline float to_float(Float16 x) {
  _Float16 h;
  std::memcpy(&h, &x.bits, sizeof h);
  return static_cast<float>(h);
}
inline Float16 to_float16(float f) {
  const _Float16 h = static_cast<_Float16>(f);
  Float16 r;
  std::memcpy(&r.bits, &h, sizeof h);
  return r;
}
#else
// IEEE binary16 <-> binary32 with round to nearest even, subnormals included.
inline float to_float(Float16 x) {
  const uint32_t h = x.bits;
  const uint32_t sign = (h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  if (exp == 0x1fu) return bits_to_float(sign | 0x7f800000u | (man << 13));
  if (exp != 0) return bits_to_float(sign | ((exp + 112u) << 23) | (man << 13));
  // zero or subnormal: man * 2^-24
  const float mag = static_cast<float>(man) * 5.9604644775390625e-8f;
  return sign ? -mag : mag;
}
inline Float16 to_float16(float f) {
  const uint32_t u = float_to_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return {static_cast<uint16_t>(sign | 0x7e00u)};  // NaN
  if (abs >= 0x477ff000u) return {static_cast<uint16_t>(sign | 0x7c00u)};  // overflow -> inf
  if (abs < 0x38800000u) {
    // subnormal or zero in half precision: round abs * 2^24 to an integer, ties to even
    const float scaled = bits_to_float(abs) * 16777216.0f;
    float r = static_cast<float>(static_cast<int32_t>(scaled));
    const float frac = scaled - r;
    if (frac > 0.5f || (frac == 0.5f && (static_cast<int32_t>(r) & 1))) r += 1.0f;
    return {static_cast<uint16_t>(sign | static_cast<uint32_t>(r))};
  }
  uint32_t v = abs - 0x38000000u;  // rebias exponent 127 -> 15
  v += 0xfffu + ((v >> 13) & 1u);
  return {static_cast<uint16_t>(sign | (v >> 13))};
}
#endif

// Storage type S -> accumulation type, as the table accumulation_kind (scan_params.h) says.
template <AccumulationKind K> struct AccumulationType;
template <> struct AccumulationType<AccumulationKind::kFloat32> { using type = float; };
template <> struct AccumulationType<AccumulationKind::kFloat64> { using type = double; };
template <> struct AccumulationType<AccumulationKind::kComplex128> { using type = Complex<double>; };
template <ScalarKind K> using accumulation_of_kind = typename AccumulationType<accumulation_kind(K)>::type;
template <class S> struct AccumulateOf;
template <> struct AccumulateOf<float> { using type = accumulation_of_kind<ScalarKind::kFloat32>; };
template <> struct AccumulateOf<double> { using type = accumulation_of_kind<ScalarKind::kFloat64>; };
template <> struct AccumulateOf<BFloat16> { using type = accumulation_of_kind<ScalarKind::kBFloat16>; };
template <> struct AccumulateOf<Float16> { using type = accumulation_of_kind<ScalarKind::kFloat16>; };
template <> struct AccumulateOf<Complex<float>> { using type = accumulation_of_kind<ScalarKind::kComplex64>; };
template <class S> using acc_t = typename AccumulateOf<S>::type;

inline float load(const float* p) { return *p; }
inline double load(const double* p) { return *p; }
inline float load(const BFloat16* p) { return to_float(*p); }
inline float load(const Float16* p) { return to_float(*p); }
inline Complex<double> load(const Complex<float>* p) { return {p->re, p->im}; }

inline void store(float* p, double v) { *p = static_cast<float>(v); }
inline void store(double* p, double v) { *p = v; }
inline void store(BFloat16* p, float v) { *p = to_bfloat16(v); }
inline void store(Float16* p, float v) { *p = to_float16(v); }
inline void store(Complex<float>* p, Complex<double> v) {
  *p = {static_cast<float>(v.re), static_cast<float>(v.im)};
}

template <class A> inline A acc_one();
template <> inline float acc_one<float>() { return 1.0f; }
template <> inline double acc_one<double>() { return 1.0; }
template <> inline Complex<double> acc_one<Complex<double>>() { return {1.0, 0.0}; }
template <class A> inline A acc_zero() { return A{}; }

}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET
