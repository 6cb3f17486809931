// The 2x2 algebra of the block scan's CUDA kernels (block_scan.cu), in the accumulation type
// Acc of scan_types.cuh (double for float32/float64, float for bfloat16/float16): 2-vectors,
// 2x2 matrices, the affine map x -> M x + E that is the propagator of one or many steps, and
// the loads/stores of the packed inner blocks (A[i][j] at 2 i + j, x[i] at i). With
// lower_triangular, A[0][1] is never read.
#pragma once

#include "scan_types.cuh"

namespace seqpar::kernels::cuda::block {

using detail::from_acc;
using detail::to_acc;
using detail::Traits;

template <class Acc>
struct Vec2 {
  Acc x0, x1;
};
template <class Acc>
struct Mat2 {
  Acc a00, a01, a10, a11;
};
// x -> M x + E.
template <class Acc>
struct Affine2 {
  Mat2<Acc> M;
  Vec2<Acc> E;
};

template <class Acc>
__device__ __forceinline__ Vec2<Acc> zero_vec() {
  return {Acc(0), Acc(0)};
}
template <class Acc>
__device__ __forceinline__ Affine2<Acc> identity_map() {
  return {{Acc(1), Acc(0), Acc(0), Acc(1)}, {Acc(0), Acc(0)}};
}

template <class Acc>
__device__ __forceinline__ Vec2<Acc> operator+(Vec2<Acc> x, Vec2<Acc> y) {
  return {x.x0 + y.x0, x.x1 + y.x1};
}
template <class Acc>
__device__ __forceinline__ Vec2<Acc> mul(const Mat2<Acc>& m, Vec2<Acc> x) {
  return {m.a00 * x.x0 + m.a01 * x.x1, m.a10 * x.x0 + m.a11 * x.x1};
}
template <class Acc>
__device__ __forceinline__ Mat2<Acc> mul(const Mat2<Acc>& l, const Mat2<Acc>& r) {
  return {l.a00 * r.a00 + l.a01 * r.a10, l.a00 * r.a01 + l.a01 * r.a11,
          l.a10 * r.a00 + l.a11 * r.a10, l.a10 * r.a01 + l.a11 * r.a11};
}
template <class Acc>
__device__ __forceinline__ Mat2<Acc> transpose(const Mat2<Acc>& m) {
  return {m.a00, m.a10, m.a01, m.a11};
}
template <class Acc>
__device__ __forceinline__ Vec2<Acc> apply(const Affine2<Acc>& f, Vec2<Acc> x) {
  return mul(f.M, x) + f.E;
}
// later o earlier: apply `earlier` first.
template <class Acc>
__device__ __forceinline__ Affine2<Acc> compose(const Affine2<Acc>& later, const Affine2<Acc>& earlier) {
  return {mul(later.M, earlier.M), apply(later, earlier.E)};
}

// Packed blocks in storage S <-> Acc.
template <class S>
__device__ __forceinline__ Mat2<typename Traits<S>::Acc> load_mat(const S* p, bool lower_triangular) {
  using Acc = typename Traits<S>::Acc;
  return {to_acc(p[0]), lower_triangular ? Acc(0) : to_acc(p[1]), to_acc(p[2]), to_acc(p[3])};
}
template <class S>
__device__ __forceinline__ Vec2<typename Traits<S>::Acc> load_vec(const S* p) {
  return {to_acc(p[0]), to_acc(p[1])};
}
template <class S>
__device__ __forceinline__ void store_mat(S* p, const Mat2<typename Traits<S>::Acc>& m) {
  p[0] = from_acc<S>(m.a00);
  p[1] = from_acc<S>(m.a01);
  p[2] = from_acc<S>(m.a10);
  p[3] = from_acc<S>(m.a11);
}
template <class S>
__device__ __forceinline__ void store_vec(S* p, Vec2<typename Traits<S>::Acc> x) {
  p[0] = from_acc<S>(x.x0);
  p[1] = from_acc<S>(x.x1);
}

}  // namespace seqpar::kernels::cuda::block
