// In-register scan of one time-contiguous sequence, written once with Google Highway for every
// CPU target: float and double, bfloat16 / float16 storage widened to float lanes, and
// complex64 as pairs of double vectors (real and imaginary parts).
//
// When time is the unit-stride dimension, a sequence has no neighbouring channels to
// vectorize across, and a scalar recurrence is bound by the latency of one multiply-add per
// step. Here a vector holds V consecutive steps (V = 8 doubles with AVX-512, 4 with AVX2, 2
// with SSSE3 or NEON for float32 and float64, which accumulate in double; twice as many float
// lanes for bfloat16 and float16); their inclusive composition is computed in log2(V)
// rounds over the affine monoid (compose_steps), then h = A * h_in + B for all
// V steps at once, and the last lane carries into the next vector. The only loop-carried
// dependency is one FMA per V steps: the carry is computed from the broadcast last lane of
// (A, B), off the path.
//
// Each translation unit is compiled for one target (target.h) with that target's -march
// flags, so Highway's static target is that target (hwy::HWY_NAMESPACE, e.g. N_AVX2) and no
// foreach_target re-inclusion is needed; Highway's ops have internal linkage, so the copies
// never share code. kDir = -1 walks memory backwards (reverse scans, and the backward pass,
// which visits time from the end): lanes keep memory order and the scan runs from the last
// lane to the first, so that no load or store permutes lanes. Built without Highway
// (SEQPAR_HAVE_HWY unset), kVectorStorage is false and the engine uses its scalar multi-chain
// path.
#pragma once

#include "target.h"

#include <cstdint>
#include <type_traits>

#include "element_types.h"

#if defined(SEQPAR_HAVE_HWY)
#include <hwy/highway.h>

#include <array>

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET::simd {

namespace hn = hwy::HWY_NAMESPACE;

template <class T>
struct Vec {
  using D = hn::ScalableTag<T>;
  using type = hn::Vec<D>;
  static constexpr int kLanes = HWY_LANES(T);
  using Index = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;

  static type set1(T x) { return hn::Set(D(), x); }
  static type loadu(const T* p) { return hn::LoadU(D(), p); }
  static void storeu(T* p, type v) { hn::StoreU(v, D(), p); }
  static type add(type x, type y) { return hn::Add(x, y); }
  static type mul(type x, type y) { return hn::Mul(x, y); }
  static type fma(type x, type y, type z) { return hn::MulAdd(x, y, z); }
  static type conj(type x) { return x; }
  static T lane0(type v) { return hn::GetLane(v); }
  static T sum(type v) { return hn::GetLane(hn::SumOfLanes(D(), v)); }

  // Lanes hold steps in memory order: with kDir = +1 lane i is step i, with kDir = -1 (memory
  // walked backwards) lane i is step V-1-i. Loads and stores then never permute lanes; the
  // scan itself runs in step order.

  // Every lane gets the last step.
  template <int kDir>
  static type last_step(type v) {
    return permute<(kDir > 0 ? kLanes - 1 : 0), 0>(v);
  }
  // One round of the scan over groups of 2s steps: lanes in the later half of their group
  // (in step order) get the last step of the earlier half, the others get `fill` (the
  // identity). The first round stays within 16-byte blocks: one interleave with the fill for
  // double lanes, which is where AVX2's 4-lane doubles spend their shuffles; a lane-crossing
  // permute and a blend cost twice that (docs/cpu_kernels.md).
  template <int kDir, int s>
  static type earlier_last(type v, type fill) {
    constexpr int kBlock = 16 / int(sizeof(T));
    if constexpr (s == 1 && sizeof(T) == 8)
      return kDir > 0 ? hn::InterleaveLower(D(), fill, v) : hn::InterleaveUpper(D(), v, fill);
    else if constexpr (s == 1)
      return kDir > 0 ? hn::OddEven(hn::DupEven(v), fill) : hn::OddEven(fill, hn::DupOdd(v));
    else if constexpr (s == 2 && kBlock == 4)
      return hn::IfThenElse(later_half<kDir, s>(),
                            kDir > 0 ? hn::Broadcast<1>(v) : hn::Broadcast<2>(v), fill);
    else
      return hn::IfThenElse(later_half<kDir, s>(), permute<(kDir > 0 ? s - 1 : s), 2 * s>(v),
                            fill);
  }

 private:
  // The lanes in the later half (in step order) of their group of 2s steps.
  template <int kDir, int s>
  static auto later_half() {
    const hn::RebindToSigned<D> di;
    alignas(64) static constexpr std::array<Index, kLanes> kBits = later_bits<kDir, s>();
    return hn::MaskFromVec(hn::BitCast(D(), hn::Load(di, kBits.data())));
  }
  // Lane i takes lane k (group = 0), or lane k of its own group of `group` lanes.
  template <int k, int group>
  static constexpr std::array<Index, kLanes> indices() {
    std::array<Index, kLanes> idx{};
    for (int i = 0; i < kLanes; ++i)
      idx[i] = static_cast<Index>(group == 0 ? k : (i / group) * group + k);
    return idx;
  }
  template <int kDir, int s>
  static constexpr std::array<Index, kLanes> later_bits() {
    std::array<Index, kLanes> bits{};
    for (int i = 0; i < kLanes; ++i) {
      const bool upper = i % (2 * s) >= s;
      bits[i] = (kDir > 0) == upper ? Index(-1) : Index(0);
    }
    return bits;
  }
  template <int k, int group>
  static type permute(type v) {
    alignas(64) static constexpr std::array<Index, kLanes> kIdx = indices<k, group>();
    return hn::TableLookupLanes(v, hn::SetTableIndices(D(), kIdx.data()));
  }
};

// Complex lanes: V consecutive complex steps split into a vector of real parts and one of
// imaginary parts (loads and stores de-interleave), so that the scan's rounds move both parts
// with the real lanes' permutes and a complex product is four multiply-adds with no swap of
// real and imaginary lanes. Everything written over Vec (compose_steps, the suffix sums, the
// policies' loops) runs on these unchanged. Not on SVE, whose vector types are sizeless and
// cannot be members of a struct: complex there runs the engine's time-inner chains.
#if !HWY_HAVE_SCALABLE
template <class R>
struct Vec<Complex<R>> {
  using Real = Vec<R>;
  using T = Complex<R>;
  struct type {
    typename Real::type re, im;
  };
  static constexpr int kLanes = Real::kLanes;

  static type set1(T x) { return {Real::set1(x.re), Real::set1(x.im)}; }
  static type mul(type x, type y) {
    return {hn::NegMulAdd(x.im, y.im, hn::Mul(x.re, y.re)),
            hn::MulAdd(x.im, y.re, hn::Mul(x.re, y.im))};
  }
  static type fma(type x, type y, type z) {
    return {hn::NegMulAdd(x.im, y.im, hn::MulAdd(x.re, y.re, z.re)),
            hn::MulAdd(x.im, y.re, hn::MulAdd(x.re, y.im, z.im))};
  }
  static type conj(type x) { return {x.re, hn::Neg(x.im)}; }
  static T lane0(type v) { return {Real::lane0(v.re), Real::lane0(v.im)}; }
  static T sum(type v) { return {Real::sum(v.re), Real::sum(v.im)}; }
  template <int kDir>
  static type last_step(type v) {
    return {Real::template last_step<kDir>(v.re), Real::template last_step<kDir>(v.im)};
  }
  template <int kDir, int s>
  static type earlier_last(type v, type fill) {
    return {Real::template earlier_last<kDir, s>(v.re, fill.re),
            Real::template earlier_last<kDir, s>(v.im, fill.im)};
  }
};
#endif

// Storage types with a vector path. float16 needs a rounding conversion from float lanes:
// F16C on x86 (Highway's fallback truncates), always there on aarch64.
template <class S>
constexpr bool kVectorStorage =
    HWY_LANES(float) >= 4 &&
    (std::is_same_v<S, float> || std::is_same_v<S, double> || std::is_same_v<S, BFloat16> ||
     (std::is_same_v<S, Complex<float>> && !HWY_HAVE_SCALABLE) ||
#if defined(__F16C__) || HWY_ARCH_ARM_A64
     std::is_same_v<S, Float16>
#else
     false
#endif
    );

// Storage types whose channel-inner lanes run through Highway: float16, whose scalar
// conversions the compiler does not vectorize (the other types' plain loops vectorize).
template <class S>
constexpr bool kVectorLanes = std::is_same_v<S, Float16> && kVectorStorage<S>;

using DF = hn::ScalableTag<float>;
using DBF16 = hn::Rebind<hwy::bfloat16_t, DF>;
using DF16 = hn::Rebind<hwy::float16_t, DF>;
using DD = hn::ScalableTag<double>;
using DFD = hn::Rebind<float, DD>;  // float storage of double lanes

// V consecutive elements at p as accumulation-type lanes (16-bit types widen to float).
template <class S>
inline typename Vec<acc_t<S>>::type load_lanes(const S* p) {
  if constexpr (std::is_same_v<S, BFloat16>) {
    return hn::PromoteTo(DF(), hn::LoadU(DBF16(), reinterpret_cast<const hwy::bfloat16_t*>(p)));
  } else if constexpr (std::is_same_v<S, Float16>) {
    return hn::PromoteTo(DF(), hn::LoadU(DF16(), reinterpret_cast<const hwy::float16_t*>(p)));
  } else if constexpr (std::is_same_v<S, float> && std::is_same_v<acc_t<S>, double>) {
    return hn::PromoteTo(DD(), hn::LoadU(DFD(), p));
  } else if constexpr (std::is_same_v<S, Complex<float>>) {
    hn::Vec<DFD> re, im;
    hn::LoadInterleaved2(DFD(), reinterpret_cast<const float*>(p), re, im);
    return {hn::PromoteTo(DD(), re), hn::PromoteTo(DD(), im)};
  } else {
    return Vec<S>::loadu(p);
  }
}

// Stores V lanes at p in the storage type, rounding to nearest even (bfloat16 keeps NaNs NaN;
// Highway's own bfloat16 demotion truncates).
template <class S>
inline void store_lanes(S* p, typename Vec<acc_t<S>>::type v) {
  if constexpr (std::is_same_v<S, BFloat16>) {
    const hn::RebindToUnsigned<DF> du;
    const hn::RebindToSigned<DF> di;
    const auto u = hn::BitCast(du, v);
    const auto lsb = hn::And(hn::ShiftRight<16>(u), hn::Set(du, 1u));
    auto r = hn::Add(u, hn::Add(hn::Set(du, 0x7fffu), lsb));
    // |v| bits above +inf's: a NaN; compared as signed, which is exact below 2^31.
    const auto nan = hn::Gt(hn::BitCast(di, hn::And(u, hn::Set(du, 0x7fffffffu))),
                            hn::Set(di, 0x7f800000));
    r = hn::IfThenElse(hn::RebindMask(du, nan), hn::Or(u, hn::Set(du, 0x400000u)), r);
    const hn::Rebind<uint16_t, DF> du16;
    const auto bits = hn::DemoteTo(du16, hn::BitCast(di, hn::ShiftRight<16>(r)));
    hn::StoreU(hn::BitCast(DBF16(), bits), DBF16(), reinterpret_cast<hwy::bfloat16_t*>(p));
  } else if constexpr (std::is_same_v<S, Float16>) {
    hn::StoreU(hn::DemoteTo(DF16(), v), DF16(), reinterpret_cast<hwy::float16_t*>(p));
  } else if constexpr (std::is_same_v<S, float> && std::is_same_v<acc_t<S>, double>) {
    hn::StoreU(hn::DemoteTo(DFD(), v), DFD(), p);
  } else if constexpr (std::is_same_v<S, Complex<float>>) {
    hn::StoreInterleaved2(hn::DemoteTo(DFD(), v.re), hn::DemoteTo(DFD(), v.im), DFD(),
                          reinterpret_cast<float*>(p));
  } else {
    Vec<S>::storeu(p, v);
  }
}

// V steps starting at p (kDir = +1) or ending at p (kDir = -1, p is step 0), in memory order.
template <class S, int kDir>
inline typename Vec<acc_t<S>>::type load_steps(const S* p) {
  using V = Vec<acc_t<S>>;
  return load_lanes(kDir > 0 ? p : p - (V::kLanes - 1));
}
template <class S, int kDir>
inline void store_steps(S* p, typename Vec<acc_t<S>>::type v) {
  using V = Vec<acc_t<S>>;
  store_lanes(kDir > 0 ? p : p - (V::kLanes - 1), v);
}

// Inclusive composition of the V steps (A_i, B_i) = P_i o ... o P_0 in place, in step order:
// log2(V) rounds in which the later half of every group of 2s steps composes with the last
// step of the earlier half (s = 1, 2, 4, ...).
template <class T, int kDir, int s = 1>
inline void compose_steps(typename Vec<T>::type& A, typename Vec<T>::type& B) {
  using V = Vec<T>;
  if constexpr (s < V::kLanes) {
    const auto Ae = V::template earlier_last<kDir, s>(A, V::set1(acc_one<T>()));
    const auto Be = V::template earlier_last<kDir, s>(B, V::set1(acc_zero<T>()));
    B = V::fma(A, Be, B);
    A = V::mul(A, Ae);
    compose_steps<T, kDir, 2 * s>(A, B);
  }
}

// Inclusive suffix products in step order, in place: the lane of step i gets a_i * ... *
// a_{V-1}. The rounds of compose_steps run the other way (-kDir), on the products alone.
template <class T, int kDir, int s = 1>
inline void suffix_products(typename Vec<T>::type& A) {
  using V = Vec<T>;
  if constexpr (s < V::kLanes) {
    A = V::mul(A, V::template earlier_last<-kDir, s>(A, V::set1(acc_one<T>())));
    suffix_products<T, kDir, 2 * s>(A);
  }
}

// sum_t x_t * w_t * ... * w_{n-1} over `vectors` vectors of steps (the x at px, the weights at
// pw, both walking kDir), and the product of all the w: a summary's B and A without composing
// maps. Each lane weights its x by the suffix products (in step order) of its vector's w; the
// lanes accumulate separately, X <- P * X + w * x with P the vector's product, and are summed
// once at the end. Per vector: log2(V) rounds on one vector and one broadcast, where composing
// (A, B) takes the rounds on two vectors and two broadcasts. kConjW weights by conj(w) (the
// backward's coefficients).
template <class S, int kDir, bool kConjW = false>
inline void suffix_weighted_sum(const S* pw, const S* px, int64_t vectors, acc_t<S>& product,
                                acc_t<S>& sum) {
  using T = acc_t<S>;
  using V = Vec<T>;
  auto P = V::set1(acc_one<T>()), X = V::set1(acc_zero<T>());
  for (int64_t i = 0; i < vectors; ++i) {
    const int64_t k = i * V::kLanes * kDir;
    auto w = load_steps<S, kDir>(pw + k);
    if constexpr (kConjW) w = V::conj(w);
    suffix_products<T, kDir>(w);
    const auto p = V::template last_step<-kDir>(w);  // the vector's first step: its product
    X = V::fma(p, X, V::mul(w, load_steps<S, kDir>(px + k)));
    P = V::mul(p, P);
  }
  product = V::lane0(P);
  sum = V::sum(X);
}

}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET::simd

#else  // no Highway: no in-register path

// Declared (never instantiated: the policies call them only when kVectorStorage holds).
namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET::simd {
template <class S>
constexpr bool kVectorStorage = false;
template <class S>
constexpr bool kVectorLanes = false;
template <class T>
struct Vec;
template <class S>
void load_lanes(const S* p);
template <class S, class V>
void store_lanes(S* p, V v);
template <class S, int kDir>
void load_steps(const S* p);
template <class S, int kDir, class V>
void store_steps(S* p, V v);
template <class T, int kDir, class V>
void compose_steps(V& A, V& B);
template <class T, int kDir, class V>
void suffix_products(V& A);
template <class S, int kDir, bool kConjW = false, class Acc>
void suffix_weighted_sum(const S* pw, const S* px, int64_t vectors, Acc& product, Acc& sum);
}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET::simd

#endif
