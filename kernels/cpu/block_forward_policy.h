// The 2x2 block recurrence h_t = A_t h_{t-1} + b_t (block_scan_params.h) as a policy of the
// scan engine (scan_engine.h): the engine threads, tiles time and composes look-back summaries
// exactly as for the diagonal scan, with a 2x2 map (Map) acting on a 2-vector state (Acc).
// Shared by the forward kernel and the summary (its aggregate) in block_scan.cpp.
//
// Channel-inner groups need packed neighbouring channels (A's channel stride 4, b's and h's 2:
// each step of a group is one contiguous run of memory); everything else runs time-inner chains.
// There is no in-register path along time (kHasContiguous = false); float32 chains go four at a
// time on 256-bit vectors (block_lanes_simd.h). kLower: A[0][1] is taken as zero and never read.
#pragma once

#include "target.h"

#include <cstdint>
#include <type_traits>

#include "block_lanes_simd.h"
#include "block_step_simd.h"
#include "block_types.h"
#include "scan_engine.h"
#include "seqpar/kernels/block_scan_params.h"

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET {

template <class Storage, bool kLower>
struct BlockForwardPolicy {
  using S = Storage;
  using T = acc_t<S>;
  using Acc = Vec2<T>;
  using Map = Mat2<T>;
  static constexpr bool kSpecialLast = false;
  static constexpr bool kReversedSteps = false;
  static constexpr bool kHasContiguous = false;
  // A descending walk visits a step's lanes in descending blocks of 128 bytes of A (its widest
  // operand: 8 float32 lanes), as the diagonal scan does per operand (scan_engine.h,
  // for_lane_blocks): blocks of 128 bytes of the 2-element operands left A's stream in 512-byte
  // upward runs, and the backward ran at 15% of triad.
  static constexpr int kDescendingLanes =
      engine::descending_block<S>() / 4 > 0 ? engine::descending_block<S>() / 4 : 1;
  static constexpr int kStepInputs = 6;  // A (4) and b (2) per step

  const S* A;
  const S* b;
  S* h;
  const S* h0;
  S* h_last;
  Strides3 As, bs, hs;
  Strides2 h0s, hls;

  struct Lane {
    const S* A;
    const S* b;
    S* h;
  };

  BlockForwardPolicy(const ConstOperand3& A_, const ConstOperand3& b_, const Operand3& h_,
                     const ConstOperand2& h0_, const Operand2& h_last_)
      : A(static_cast<const S*>(A_.data)),
        b(static_cast<const S*>(b_.data)),
        h(static_cast<S*>(h_.data)),
        h0(static_cast<const S*>(h0_.data)),
        h_last(static_cast<S*>(h_last_.data)),
        As(A_.stride), bs(b_.stride), hs(h_.stride), h0s(h0_.stride), hls(h_last_.stride) {}

  explicit BlockForwardPolicy(const BlockScanForwardParams& p)
      : BlockForwardPolicy(p.A, p.b, p.h, p.h0, p.h_last) {}

  bool unit_channel_stride() const {
    return As.channel == 4 && bs.channel == 2 && (h == nullptr || hs.channel == 2);
  }
  Lane lane(int64_t bi, int64_t c) const {
    return {A + bi * As.batch + c * As.channel, b + bi * bs.batch + c * bs.channel,
            h + bi * hs.batch + c * hs.channel};
  }
  Lane advance(const Lane& L, int64_t k) const {
    return {L.A + k * As.time, L.b + k * bs.time, L.h + k * hs.time};
  }
  // +1 / -1 when every operand's steps are packed one after another (A's time stride 4, b's
  // and h's 2): the engine then runs fewer sequences per time-inner group (each one is a memory
  // stream per operand, scan_engine.h kTimeLanesContiguous).
  int unit_time_direction() const {
    const int64_t d = As.time / 4;
    if ((d != 1 && d != -1) || As.time != 4 * d || bs.time != 2 * d ||
        (h != nullptr && hs.time != 2 * d))
      return 0;
    return static_cast<int>(d);
  }
  void contig_aggregate(const Lane&, int64_t, int64_t, Map&, Acc&) const {}
  void contig_run(const Lane&, int64_t, int64_t, Acc&) const {}
  bool time_descends() const { return As.time < 0; }

  // ---- channel-inner: lanes [l0, l1) of one step, packed channels --------------------------
  // With vectors of 256 bits or more (AVX2, AVX-512) the channel loops take the
  // struct-of-arrays steps of block_lanes_simd.h instead (kWideLanes); on 128-bit targets (SSE4,
  // NEON) these, one lane per 2-lane vector; bfloat16, float16, SVE and builds without Highway
  // the scalar step.
  static void aggregate_lanes(const S* __restrict pA, const S* __restrict pb,
                              Map* __restrict M, Acc* __restrict E, int l0, int l1) {
    if constexpr (block_simd::kVectorStep<S>) {
      for (int l = l0; l < l1; ++l)  // Mat2 row-major, Vec2 (x, y): contiguous doubles
        block_simd::forward_aggregate_step<kLower>(pA + 4 * l, pb + 2 * l, &M[l].m00, &E[l].x);
      return;
    }
    for (int l = l0; l < l1; ++l) {
      const Map a = load_map<kLower>(pA + 4 * l);
      M[l] = a * M[l];
      E[l] = a * E[l] + load_vec(pb + 2 * l);
    }
  }
  static void run_lanes(const S* __restrict pA, const S* __restrict pb, S* __restrict ph,
                        Acc* __restrict st, int l0, int l1) {
    if constexpr (block_simd::kVectorStep<S>) {
      namespace hn = block_simd::hn;
      const block_simd::D2 d;
      for (int l = l0; l < l1; ++l)  // one lane's step per vector (Vec2: x, y in order)
        hn::StoreU(block_simd::forward_step<kLower>(pA + 4 * l, pb + 2 * l, ph + 2 * l,
                                                    hn::LoadU(d, &st[l].x)),
                   d, &st[l].x);
      return;
    }
    // Component by component: GCC does not vectorize a loop that copies a whole struct.
    for (int l = l0; l < l1; ++l) {
      const Acc v = load_map<kLower>(pA + 4 * l) * st[l] + load_vec(pb + 2 * l);
      st[l].x = v.x;
      st[l].y = v.y;
      store_vec(ph + 2 * l, v);
    }
  }
  void channel_aggregate(const Lane& L, int n, bool descending, int64_t k0, int64_t k1, Map* M,
                         Acc* E) const {
    if constexpr (block_lanes::kWideLanes<S>) {
      // Struct of arrays for the call (block_lanes_simd.h): m00, m01, m10, m11, ex, ey.
      double* buf = block_lanes::scratch(6 * size_t(n));
      double* m[4] = {buf, buf + n, buf + 2 * n, buf + 3 * n};
      double* e[2] = {buf + 4 * n, buf + 5 * n};
      for (int l = 0; l < n; ++l) {
        m[0][l] = m[3][l] = 1.0;
        m[1][l] = m[2][l] = e[0][l] = e[1][l] = 0.0;
      }
      const S* pA = L.A + k0 * As.time;
      const S* pb = L.b + k0 * bs.time;
      for (int64_t k = k0; k < k1; ++k, pA += As.time, pb += bs.time)
        engine::for_lane_blocks<kDescendingLanes>(n, descending, [&](int l0, int l1) {
          block_lanes::forward_aggregate<kLower>(pA, pb, m, e, l0, l1);
        });
      for (int l = 0; l < n; ++l) {
        M[l] = Map{m[0][l], m[1][l], m[2][l], m[3][l]};
        E[l] = Acc{e[0][l], e[1][l]};
      }
      return;
    }
    for (int l = 0; l < n; ++l) {
      M[l] = acc_one<Map>();
      E[l] = acc_zero<Acc>();
    }
    const S* pA = L.A + k0 * As.time;
    const S* pb = L.b + k0 * bs.time;
    for (int64_t k = k0; k < k1; ++k, pA += As.time, pb += bs.time)
      engine::for_lane_blocks<kDescendingLanes>(
          n, descending, [&](int l0, int l1) { aggregate_lanes(pA, pb, M, E, l0, l1); });
  }
  void channel_run(const Lane& L, int n, bool descending, int64_t k0, int64_t k1, Acc* s) const {
    const S* pA = L.A + k0 * As.time;
    const S* pb = L.b + k0 * bs.time;
    S* ph = L.h + k0 * hs.time;
    if constexpr (block_lanes::kWideLanes<S>) {
      double* x = block_lanes::scratch(2 * size_t(n));  // struct of arrays for the call
      double* y = x + n;
      for (int l = 0; l < n; ++l) {
        x[l] = s[l].x;
        y[l] = s[l].y;
      }
      for (int64_t k = k0; k < k1; ++k, pA += As.time, pb += bs.time, ph += hs.time)
        engine::for_lane_blocks<kDescendingLanes>(n, descending, [&](int l0, int l1) {
          block_lanes::forward_run<kLower>(pA, pb, ph, x, y, l0, l1);
        });
      for (int l = 0; l < n; ++l) s[l] = Acc{x[l], y[l]};
      return;
    }
    for (int64_t k = k0; k < k1; ++k, pA += As.time, pb += bs.time, ph += hs.time)
      engine::for_lane_blocks<kDescendingLanes>(
          n, descending, [&](int l0, int l1) { run_lanes(pA, pb, ph, s, l0, l1); });
  }

  // ---- time-inner: n independent chains advanced together ----------------------------------
  // Pointers and states in local arrays, so that the inner loop keeps them in registers.
  void chains_aggregate(const Lane* chains, int n, int64_t len, Map* M, Acc* E) const {
    const S* pA[engine::kMaxChains];
    const S* pb[engine::kMaxChains];
    Map m[engine::kMaxChains];
    Acc e[engine::kMaxChains];
    for (int c = 0; c < n; ++c) {
      pA[c] = chains[c].A;
      pb[c] = chains[c].b;
      m[c] = acc_one<Map>();
      e[c] = acc_zero<Acc>();
    }
    const int64_t sA = As.time, sb = bs.time;
    for (int64_t i = 0; i < len; ++i)
      for (int c = 0; c < n; ++c) {
        const Map a = load_map<kLower>(pA[c] + i * sA);
        m[c] = a * m[c];
        e[c] = a * e[c] + load_vec(pb[c] + i * sb);
      }
    for (int c = 0; c < n; ++c) {
      M[c] = m[c];
      E[c] = e[c];
    }
  }
  // Chains of a count fixed at compile time (scan_engine.h, for_fixed_chain_runs), so that the
  // states stay in registers.
  void chains_run(const Lane* chains, int n, int64_t len, Acc* s) const {
    engine::for_fixed_chain_runs(n, [&](auto k, int c0) {
      chains_run_fixed<decltype(k)::value>(chains + c0, len, s + c0);
    });
  }
  template <int kN>
  void chains_run_fixed(const Lane* chains, int64_t len, Acc* s) const {
    if constexpr (block_lanes::kWideChains<S> && kN >= 4) {
      constexpr int kQuads = kN / 4;
      with_time_strides([&](auto sA, auto sb, auto sh) {
        chains_run_quads<kQuads>(chains, len, s, sA, sb, sh);
      });
      if constexpr (kN % 4 != 0) chains_run_pairs<kN % 4>(chains + 4 * kQuads, len, s + 4 * kQuads);
    } else {
      chains_run_pairs<kN>(chains, len, s);
    }
  }
  // Calls f(sA, sb, sh) with the operands' time strides, as compile-time constants where every
  // operand's steps are packed one after another (A 4, b and h 2; the engine's time-contiguous
  // groups), so that the quads index their twelve streams from one register: with runtime
  // strides they ran about 6% slower (64 x 2^16 x 1, one thread, three alternating rounds). The
  // 2-lane chains ran 1-5% slower with it on SSE4 (five rounds) and keep runtime strides.
  template <class F>
  void with_time_strides(F&& f) const {
    using Four = std::integral_constant<int64_t, 4>;
    using Two = std::integral_constant<int64_t, 2>;
    if (As.time == 4 && bs.time == 2 && hs.time == 2)
      f(Four{}, Two{}, Two{});
    else
      f(As.time, bs.time, hs.time);
  }
  // Four chains per pair of 256-bit vectors (block_lanes_simd.h, forward_chain_quads).
  template <int kQuads, class St0, class St1>
  void chains_run_quads(const Lane* chains, int64_t len, Acc* s, St0 sA, St1 sb, St1 sh) const {
    const float* pA[4 * kQuads];
    const float* pb[4 * kQuads];
    float* ph[4 * kQuads];
    double x[4 * kQuads], y[4 * kQuads];
    for (int c = 0; c < 4 * kQuads; ++c) {
      pA[c] = chains[c].A;
      pb[c] = chains[c].b;
      ph[c] = chains[c].h;
      x[c] = s[c].x;
      y[c] = s[c].y;
    }
    block_lanes::forward_chain_quads<kLower, kQuads>(pA, pb, ph, sA, sb, sh, len, x, y);
    for (int c = 0; c < 4 * kQuads; ++c) s[c] = Acc{x[c], y[c]};
  }
  // One chain per 2-lane vector (block_step_simd.h), or scalar.
  template <int kN>
  void chains_run_pairs(const Lane* chains, int64_t len, Acc* s) const {
    const S* pA[kN];
    const S* pb[kN];
    S* ph[kN];
    for (int c = 0; c < kN; ++c) {
      pA[c] = chains[c].A;
      pb[c] = chains[c].b;
      ph[c] = chains[c].h;
    }
    const int64_t sA = As.time, sb = bs.time, sh = hs.time;
    if constexpr (block_simd::kVectorStep<S>) {
      namespace hn = block_simd::hn;
      const block_simd::D2 d;
      block_simd::ChainVectors<S, kN> v;
      for (int c = 0; c < kN; ++c) v[c] = hn::LoadU(d, &s[c].x);  // Vec2: x, y in order
      for (int64_t i = 0; i < len; ++i)
#pragma GCC unroll 8
        for (int c = 0; c < kN; ++c)
          v[c] = block_simd::forward_step<kLower>(pA[c] + i * sA, pb[c] + i * sb, ph[c] + i * sh,
                                                  v[c]);
      for (int c = 0; c < kN; ++c) hn::StoreU(v[c], d, &s[c].x);
    } else {
      T x[kN], y[kN];
      for (int c = 0; c < kN; ++c) {
        x[c] = s[c].x;
        y[c] = s[c].y;
      }
      for (int64_t i = 0; i < len; ++i)
#pragma GCC unroll 8
        for (int c = 0; c < kN; ++c) {
          const S* a = pA[c] + i * sA;
          const S* bb = pb[c] + i * sb;
          const T nx = load(a) * x[c] + (kLower ? T(0) : load(a + 1) * y[c]) + load(bb);
          const T ny = load(a + 2) * x[c] + load(a + 3) * y[c] + load(bb + 1);
          x[c] = nx;
          y[c] = ny;
          store(ph[c] + i * sh, nx);
          store(ph[c] + i * sh + 1, ny);
        }
      for (int c = 0; c < kN; ++c) s[c] = Acc{x[c], y[c]};
    }
  }

  Acc step_last(const Lane&, int64_t, int64_t, int64_t, Acc s) const { return s; }  // unused
  Acc initial(int64_t bi, int64_t c) const {
    return h0 ? load_vec(h0 + bi * h0s.batch + c * h0s.channel) : acc_zero<Acc>();
  }
  void finish(int64_t bi, int64_t c, Acc s) const {
    if (h_last) store_vec(h_last + bi * hls.batch + c * hls.channel, s);
  }
};

}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET
