// In-register scan of one time-contiguous sequence, written once with Google Highway for every
// CPU target: float and double, and bfloat16 / float16 storage widened to float lanes.
//
// When time is the unit-stride dimension, a sequence has no neighbouring channels to
// vectorize across, and a scalar recurrence is bound by the latency of one multiply-add per
// step. Here a vector holds V consecutive steps (V = 8 doubles with AVX-512, 4 with AVX2, 2
// with SSSE3 or NEON for float32 and float64, which accumulate in double; twice as many float
// lanes for bfloat16 and float16); their inclusive composition is computed in log2(V)
// shift-and-combine rounds (Kogge-Stone over the affine monoid), then h = A * h_in + B for all
// V steps at once, and the last lane carries into the next vector. The only loop-carried
// dependency is one FMA per V steps: the carry is computed from the broadcast last lane of
// (A, B), off the path.
//
// Each translation unit is compiled for one target (target.h) with that target's -march
// flags, so Highway's static target is that target (hwy::HWY_NAMESPACE, e.g. N_AVX2) and no
// foreach_target re-inclusion is needed; Highway's ops have internal linkage, so the copies
// never share code. kDir = -1 walks memory backwards (reverse scans, and the backward pass,
// which visits time from the end): loads and stores reverse the lanes so that lane order is
// always step order. Built without Highway (SEQPAR_HAVE_HWY unset), kVectorStorage is false
// and the engine uses its scalar multi-chain path.
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
  static type reverse(type v) { return hn::Reverse(D(), v); }
  // Every lane gets the last lane.
  static type last(type v) {
    return permute<kLanes - 1, 0>(v);
  }
  // Lane i gets v[i - s] for i >= s and fill[i] below.
  template <int s>
  static type shift_up(type v, type fill) {
    static_assert(0 < s && s < kLanes, "shift within the vector");
    return hn::IfThenElse(hn::FirstN(D(), s), fill, permute<-s, 1>(v));
  }
  static type mul(type x, type y) { return hn::Mul(x, y); }
  static type add(type x, type y) { return hn::Add(x, y); }
  static type fma(type x, type y, type z) { return hn::MulAdd(x, y, z); }
  static T lane0(type v) { return hn::GetLane(v); }

 private:
  // Lane i takes lane (relative ? i + k : k), clamped to [0, kLanes).
  template <int k, int relative>
  static constexpr std::array<Index, kLanes> indices() {
    std::array<Index, kLanes> idx{};
    for (int i = 0; i < kLanes; ++i) {
      const int j = relative ? i + k : k;
      idx[i] = static_cast<Index>(j < 0 ? 0 : (j >= kLanes ? kLanes - 1 : j));
    }
    return idx;
  }
  template <int k, int relative>
  static type permute(type v) {
    alignas(64) static constexpr std::array<Index, kLanes> kIdx = indices<k, relative>();
    return hn::TableLookupLanes(v, hn::SetTableIndices(D(), kIdx.data()));
  }
};

// Storage types with a vector path. float16 needs a rounding conversion from float lanes:
// F16C on x86 (Highway's fallback truncates), always there on aarch64.
template <class S>
constexpr bool kVectorStorage =
    HWY_LANES(float) >= 4 &&
    (std::is_same_v<S, float> || std::is_same_v<S, double> || std::is_same_v<S, BFloat16> ||
#if defined(__F16C__) || HWY_ARCH_ARM_A64
     std::is_same_v<S, Float16>
#else
     false
#endif
    );

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

// Inclusive composition of the V steps (A_i, B_i) = P_i o ... o P_0 in place: rounds with
// shifts 1, 2, 4, ... < V.
template <class T, int s = 1>
inline void compose_steps(typename Vec<T>::type& A, typename Vec<T>::type& B) {
  using V = Vec<T>;
  if constexpr (s < V::kLanes) {
    const auto As = V::template shift_up<s>(A, V::set1(T(1)));
    const auto Bs = V::template shift_up<s>(B, V::set1(T(0)));
    B = V::fma(A, Bs, B);
    A = V::mul(A, As);
    compose_steps<T, 2 * s>(A, B);
  }
}

}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET::simd

#else  // no Highway: no in-register path

// Declared (never instantiated: the policies call them only when kVectorStorage holds).
namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET::simd {
template <class S>
constexpr bool kVectorStorage = false;
template <class T>
struct Vec;
template <class S, int kDir>
void load_steps(const S* p);
template <class S, int kDir, class V>
void store_steps(S* p, V v);
template <class T, class V>
void compose_steps(V& A, V& B);
}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET::simd

#endif
