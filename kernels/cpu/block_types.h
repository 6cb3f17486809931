// The accumulation types of the 2x2 block scan (block_scan_params.h) on the CPU: a 2-vector
// state and a 2x2 map, with the products the scan engine composes (scan_engine.h: Map * Map,
// Map * Acc + Acc). The engine's diagonal policies use one scalar type for both.
#pragma once

#include "target.h"

#include "element_types.h"

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET {

template <class T>
struct Vec2 {
  T x, y;
};
// Row-major: [[m00, m01], [m10, m11]].
template <class T>
struct Mat2 {
  T m00, m01, m10, m11;
};

template <class T>
inline Vec2<T> operator+(Vec2<T> u, Vec2<T> v) { return {u.x + v.x, u.y + v.y}; }
template <class T>
inline Vec2<T> operator*(Mat2<T> m, Vec2<T> v) {
  return {m.m00 * v.x + m.m01 * v.y, m.m10 * v.x + m.m11 * v.y};
}
template <class T>
inline Mat2<T> operator*(Mat2<T> l, Mat2<T> r) {
  return {l.m00 * r.m00 + l.m01 * r.m10, l.m00 * r.m01 + l.m01 * r.m11,
          l.m10 * r.m00 + l.m11 * r.m10, l.m10 * r.m01 + l.m11 * r.m11};
}
template <class T>
inline Mat2<T> transpose(Mat2<T> m) { return {m.m00, m.m10, m.m01, m.m11}; }

template <> inline Mat2<double> acc_one<Mat2<double>>() { return {1.0, 0.0, 0.0, 1.0}; }
template <> inline Mat2<float> acc_one<Mat2<float>>() { return {1.0f, 0.0f, 0.0f, 1.0f}; }

// Packed storage <-> accumulation: A at p[0..3] row-major, a vector at p[0..1]. kLower: p[1]
// (A[0][1]) is not read.
template <bool kLower, class S>
inline Mat2<acc_t<S>> load_map(const S* p) {
  return {load(p), kLower ? acc_t<S>(0) : load(p + 1), load(p + 2), load(p + 3)};
}
template <class S>
inline Vec2<acc_t<S>> load_vec(const S* p) { return {load(p), load(p + 1)}; }
template <class S, class T>
inline void store_vec(S* p, Vec2<T> v) {
  store(p, v.x);
  store(p + 1, v.y);
}
template <class S, class T>
inline void store_map(S* p, Mat2<T> m) {
  store(p, m.m00);
  store(p + 1, m.m01);
  store(p + 2, m.m10);
  store(p + 3, m.m11);
}

}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET
