// The forward recurrence h_t = a_t * h_{t-1} + b_t as a policy of the scan engine
// (scan_engine.h): how to read (a, b), what to write, and the vectorizable inner loops.
// Shared by scan_forward.cpp and scan_summary.cpp (whose summary is this policy's aggregate).
#pragma once

#include "target.h"

#include <type_traits>

#include "scan_engine.h"
#include "vector_scan.h"
#include "seqpar/kernels/scan_params.h"

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET {

template <class Storage>
struct ForwardPolicy {
  using S = Storage;
  using Acc = acc_t<S>;
  using Map = Acc;  // a step's map is a scalar of the state's type
  static constexpr bool kSpecialLast = false;
  static constexpr bool kReversedSteps = false;  // step k is time k

  const S* a;
  const S* b;
  S* h;
  const S* h0;
  S* h_last;
  Strides3 as, bs, hs;
  Strides2 h0s, hls;

  struct Lane {
    const S* a;
    const S* b;
    S* h;
  };

  explicit ForwardPolicy(const ScanForwardParams& p)
      : a(static_cast<const S*>(p.a.data)),
        b(static_cast<const S*>(p.b.data)),
        h(static_cast<S*>(p.h.data)),
        h0(static_cast<const S*>(p.h0.data)),
        h_last(static_cast<S*>(p.h_last.data)),
        as(p.a.stride), bs(p.b.stride), hs(p.h.stride),
        h0s(p.h0.stride), hls(p.h_last.stride) {}

  bool unit_channel_stride() const {
    return as.channel == 1 && bs.channel == 1 && (h == nullptr || hs.channel == 1);
  }
  Lane lane(int64_t bi, int64_t c) const {
    return {a + bi * as.batch + c * as.channel, b + bi * bs.batch + c * bs.channel,
            h + bi * hs.batch + c * hs.channel};
  }
  Lane advance(const Lane& L, int64_t k) const {
    return {L.a + k * as.time, L.b + k * bs.time, L.h + k * hs.time};
  }

  static constexpr bool kHasContiguous = simd::kVectorStorage<S>;
  // +1 or -1 when every operand walks time with that unit stride (time-contiguous tensors),
  // else 0.
  int unit_time_direction() const {
    const int64_t d = as.time;
    if ((d != 1 && d != -1) || bs.time != d || (h != nullptr && hs.time != d)) return 0;
    return static_cast<int>(d);
  }
  void contig_aggregate(const Lane& L, int64_t k0, int64_t k1, Acc& A, Acc& B) const {
    if constexpr (kHasContiguous) {
      if (as.time > 0)
        this->template contig_aggregate_dir<1>(L, k0, k1, A, B);
      else
        this->template contig_aggregate_dir<-1>(L, k0, k1, A, B);
    }
  }
  void contig_run(const Lane& L, int64_t k0, int64_t k1, Acc& s) const {
    if constexpr (kHasContiguous) {
      if (as.time > 0)
        this->template contig_run_dir<1>(L, k0, k1, s);
      else
        this->template contig_run_dir<-1>(L, k0, k1, s);
    }
  }
  // The summary (A, B) of steps [k0, k1) without composing maps (docs/cpu_kernels.md, "The
  // summary without the rounds on B"): B = sum_t b_t * a_{t+1} * ... * a_{n-1}, so b is
  // weighted by the a one step ahead. The vectors cover steps [0, m) with m < n, their weights
  // a_1 .. a_m; step m then adds its b alone, and a_0 joins A.
  template <int kDir>
  void contig_aggregate_dir(const Lane& L, int64_t k0, int64_t k1, Acc& A, Acc& B) const {
    constexpr int64_t kV = simd::Vec<Acc>::kLanes;
    const S* pa = L.a + k0 * kDir;
    const S* pb = L.b + k0 * kDir;
    const int64_t n = k1 - k0;
    const int64_t vectors = (n - 1) / kV;
    int64_t k = 0;
    A = acc_one<Acc>();
    B = acc_zero<Acc>();
    if (vectors > 0) {
      simd::suffix_weighted_sum<S, kDir>(pa + kDir, pb, vectors, A, B);
      k = vectors * kV;
      A = load(pa) * A;
      B = B + load(pb + k * kDir);
      ++k;
    }
    for (; k < n; ++k) {
      const Acc x = load(pa + k * kDir);
      A = x * A;
      B = x * B + load(pb + k * kDir);
    }
  }
  template <int kDir>
  void contig_run_dir(const Lane& L, int64_t k0, int64_t k1, Acc& s) const {
    using V = simd::Vec<Acc>;
    const S* pa = L.a + k0 * kDir;
    const S* pb = L.b + k0 * kDir;
    S* ph = L.h + k0 * kDir;
    const int64_t n = k1 - k0;
    auto vh = V::set1(s);
    int64_t k = 0;
    for (; k + V::kLanes <= n; k += V::kLanes) {
      auto va = simd::load_steps<S, kDir>(pa + k * kDir);
      auto vb = simd::load_steps<S, kDir>(pb + k * kDir);
      simd::compose_steps<Acc, kDir>(va, vb);
      const auto out = V::fma(va, vh, vb);
      simd::store_steps<S, kDir>(ph + k * kDir, out);
      // The carry is out's last lane, computed from the broadcast last map so that the
      // loop-carried path is one FMA, not an FMA and a lane permute (which halved the speed of
      // the 4-lane double vectors of AVX2, docs/accuracy.md).
      vh = V::fma(V::template last_step<kDir>(va), vh, V::template last_step<kDir>(vb));
    }
    s = V::lane0(vh);
    for (; k < n; ++k) {
      s = load(pa + k * kDir) * s + load(pb + k * kDir);
      store(ph + k * kDir, s);
    }
  }

  // Whether step k+1 lies below step k in memory (a reverse scan).
  bool time_descends() const { return as.time < 0; }

  void channel_aggregate(const Lane& L, int n, bool descending, int64_t k0, int64_t k1, Acc* A,
                         Acc* B) const {
    Acc cA[engine::kChannelLanes], cB[engine::kChannelLanes];
    for (int l = 0; l < n; ++l) {
      cA[l] = acc_one<Acc>();
      cB[l] = acc_zero<Acc>();
    }
    const S* pa = L.a + k0 * as.time;
    const S* pb = L.b + k0 * bs.time;
    for (int64_t k = k0; k < k1; ++k, pa += as.time, pb += bs.time)
      engine::for_lane_blocks<engine::descending_block<S>()>(n, descending,
                              [&](int l0, int l1) { aggregate_lanes(pa, pb, cA, cB, l0, l1); });
    for (int l = 0; l < n; ++l) {
      A[l] = cA[l];
      B[l] = cB[l];
    }
  }

  void channel_run(const Lane& L, int n, bool descending, int64_t k0, int64_t k1,
                   Acc* s) const {
    Acc st[engine::kChannelLanes];
    for (int l = 0; l < n; ++l) st[l] = s[l];
    const S* pa = L.a + k0 * as.time;
    const S* pb = L.b + k0 * bs.time;
    S* ph = L.h + k0 * hs.time;
    int64_t k = k0;
    if (!descending && n >= kTwoStepLanes && !simd::kVectorLanes<S>)
      for (; k + 2 <= k1; k += 2, pa += 2 * as.time, pb += 2 * bs.time, ph += 2 * hs.time)
        run_two_steps(pa, pa + as.time, pb, pb + bs.time, ph, ph + hs.time, st, n);
    for (; k < k1; ++k, pa += as.time, pb += bs.time, ph += hs.time)
      engine::for_lane_blocks<engine::descending_block<S>()>(n, descending,
                              [&](int l0, int l1) { run_lanes(pa, pb, ph, st, l0, l1); });
    for (int l = 0; l < n; ++l) s[l] = st[l];
  }

  // One step of lanes [l0, l1) of a channel-inner group (restrict parameters, so that the
  // compiler vectorizes without run-time overlap checks). float16's scalar conversions do not
  // vectorize, so its lanes go through Highway (simd::kVectorLanes).
  static void aggregate_lanes(const S* __restrict pa, const S* __restrict pb,
                              Acc* __restrict cA, Acc* __restrict cB, int l0, int l1) {
    int l = l0;
    if constexpr (simd::kVectorLanes<S>) {
      using V = simd::Vec<Acc>;
      for (; l + V::kLanes <= l1; l += V::kLanes) {
        const auto c = simd::load_lanes(pa + l);
        V::storeu(cA + l, V::mul(c, V::loadu(cA + l)));
        V::storeu(cB + l, V::fma(c, V::loadu(cB + l), simd::load_lanes(pb + l)));
      }
    }
    for (; l < l1; ++l) {
      const Acc c = load(pa + l);
      cA[l] = c * cA[l];
      cB[l] = c * cB[l] + load(pb + l);
    }
  }
  static void run_lanes(const S* __restrict pa, const S* __restrict pb, S* __restrict ph,
                        Acc* __restrict st, int l0, int l1) {
    int l = l0;
    if constexpr (simd::kVectorLanes<S>) {
      using V = simd::Vec<Acc>;
      for (; l + V::kLanes <= l1; l += V::kLanes) {
        const auto v = V::fma(simd::load_lanes(pa + l), V::loadu(st + l), simd::load_lanes(pb + l));
        V::storeu(st + l, v);
        simd::store_lanes(ph + l, v);
      }
    }
    for (; l < l1; ++l) {
      const Acc v = load(pa + l) * st[l] + load(pb + l);
      st[l] = v;
      store(ph + l, v);
    }
  }

  // Groups of at least this many lanes run two steps per pass over their state (when their
  // rows ascend in memory): the float64 state of 4096 float32 channels is 32 KiB, as large as
  // L1, and is then read and written once per two steps. Measured (docs/cpu_kernels.md, "Two
  // steps per pass"): float32, 4096 channels, forward +8 to +14% on one and two threads with
  // avx2 and avx512; at 256 and 1024 channels it lost (one thread 26.6 -> 10.8 and 26.5 -> 19.8
  // GB/s), hence the threshold.
  static constexpr int kTwoStepLanes = 2048;
  static void run_two_steps(const S* __restrict pa0, const S* __restrict pa1,
                            const S* __restrict pb0, const S* __restrict pb1,
                            S* __restrict ph0, S* __restrict ph1, Acc* __restrict st, int n) {
    for (int l = 0; l < n; ++l) {
      const Acc v0 = load(pa0 + l) * st[l] + load(pb0 + l);
      store(ph0 + l, v0);
      const Acc v1 = load(pa1 + l) * v0 + load(pb1 + l);
      store(ph1 + l, v1);
      st[l] = v1;
    }
  }

  void chains_aggregate(const Lane* chains, int n, int64_t len, Acc* A, Acc* B) const {
    const S* pa[engine::kMaxChains];
    const S* pb[engine::kMaxChains];
    for (int c = 0; c < n; ++c) {
      pa[c] = chains[c].a;
      pb[c] = chains[c].b;
      A[c] = acc_one<Acc>();
      B[c] = acc_zero<Acc>();
    }
    const int64_t sa = as.time, sb = bs.time;
    for (int64_t i = 0; i < len; ++i)
      for (int c = 0; c < n; ++c) {
        const Acc x = load(pa[c] + i * sa);
        A[c] = x * A[c];
        B[c] = x * B[c] + load(pb[c] + i * sb);
      }
  }

  void chains_run(const Lane* chains, int n, int64_t len, Acc* s) const {
    const S* pa[engine::kMaxChains];
    const S* pb[engine::kMaxChains];
    S* ph[engine::kMaxChains];
    Acc st[engine::kMaxChains];
    for (int c = 0; c < n; ++c) {
      pa[c] = chains[c].a;
      pb[c] = chains[c].b;
      ph[c] = chains[c].h;
      st[c] = s[c];
    }
    const int64_t sa = as.time, sb = bs.time, sh = hs.time;
    for (int64_t i = 0; i < len; ++i)
      for (int c = 0; c < n; ++c) {
        const Acc v = load(pa[c] + i * sa) * st[c] + load(pb[c] + i * sb);
        st[c] = v;
        store(ph[c] + i * sh, v);
      }
    for (int c = 0; c < n; ++c) s[c] = st[c];
  }

  Acc step_last(const Lane&, int64_t, int64_t, int64_t, Acc s) const { return s; }  // unused
  Acc initial(int64_t bi, int64_t c) const {
    return h0 ? load(h0 + bi * h0s.batch + c * h0s.channel) : acc_zero<Acc>();
  }
  void finish(int64_t bi, int64_t c, Acc s) const {
    if (h_last) store(h_last + bi * hls.batch + c * hls.channel, s);
  }
};

}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET
