// The 2x2 block recurrence h_t = A_t h_{t-1} + b_t (block_scan_params.h) as a policy of the
// scan engine (scan_engine.h): the engine threads, tiles time and composes look-back summaries
// exactly as for the diagonal scan, with a 2x2 map (Map) acting on a 2-vector state (Acc).
// Shared by the forward kernel and the summary (its aggregate) in block_scan.cpp.
//
// Channel-inner groups need packed neighbouring channels (A's channel stride 4, b's and h's 2:
// each step of a group is one contiguous run of memory); everything else runs time-inner chains.
// There is no in-register path along time (kHasContiguous = false). kLower: A[0][1] is taken as
// zero and never read.
#pragma once

#include "target.h"

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
  int unit_time_direction() const { return 0; }
  void contig_aggregate(const Lane&, int64_t, int64_t, Map&, Acc&) const {}
  void contig_run(const Lane&, int64_t, int64_t, Acc&) const {}
  bool time_descends() const { return As.time < 0; }

  // ---- channel-inner: lanes [l0, l1) of one step, packed channels --------------------------
  static void aggregate_lanes(const S* __restrict pA, const S* __restrict pb,
                              Map* __restrict M, Acc* __restrict E, int l0, int l1) {
    for (int l = l0; l < l1; ++l) {
      const Map a = load_map<kLower>(pA + 4 * l);
      M[l] = a * M[l];
      E[l] = a * E[l] + load_vec(pb + 2 * l);
    }
  }
  static void run_lanes(const S* __restrict pA, const S* __restrict pb, S* __restrict ph,
                        Acc* __restrict st, int l0, int l1) {
    for (int l = l0; l < l1; ++l) {
      const Acc v = load_map<kLower>(pA + 4 * l) * st[l] + load_vec(pb + 2 * l);
      st[l] = v;
      store_vec(ph + 2 * l, v);
    }
  }
  void channel_aggregate(const Lane& L, int n, bool descending, int64_t k0, int64_t k1, Map* M,
                         Acc* E) const {
    for (int l = 0; l < n; ++l) {
      M[l] = acc_one<Map>();
      E[l] = acc_zero<Acc>();
    }
    const S* pA = L.A + k0 * As.time;
    const S* pb = L.b + k0 * bs.time;
    for (int64_t k = k0; k < k1; ++k, pA += As.time, pb += bs.time)
      engine::for_lane_blocks<engine::descending_block<S>()>(
          n, descending, [&](int l0, int l1) { aggregate_lanes(pA, pb, M, E, l0, l1); });
  }
  void channel_run(const Lane& L, int n, bool descending, int64_t k0, int64_t k1, Acc* s) const {
    const S* pA = L.A + k0 * As.time;
    const S* pb = L.b + k0 * bs.time;
    S* ph = L.h + k0 * hs.time;
    for (int64_t k = k0; k < k1; ++k, pA += As.time, pb += bs.time, ph += hs.time)
      engine::for_lane_blocks<engine::descending_block<S>()>(
          n, descending, [&](int l0, int l1) { run_lanes(pA, pb, ph, s, l0, l1); });
  }

  // ---- time-inner: n independent chains advanced together ----------------------------------
  void chains_aggregate(const Lane* chains, int n, int64_t len, Map* M, Acc* E) const {
    for (int c = 0; c < n; ++c) {
      M[c] = acc_one<Map>();
      E[c] = acc_zero<Acc>();
    }
    for (int64_t i = 0; i < len; ++i)
      for (int c = 0; c < n; ++c) {
        const Map a = load_map<kLower>(chains[c].A + i * As.time);
        M[c] = a * M[c];
        E[c] = a * E[c] + load_vec(chains[c].b + i * bs.time);
      }
  }
  void chains_run(const Lane* chains, int n, int64_t len, Acc* s) const {
    Acc st[engine::kMaxChains];
    for (int c = 0; c < n; ++c) st[c] = s[c];
    for (int64_t i = 0; i < len; ++i)
      for (int c = 0; c < n; ++c) {
        const Acc v = load_map<kLower>(chains[c].A + i * As.time) * st[c] +
                      load_vec(chains[c].b + i * bs.time);
        st[c] = v;
        store_vec(chains[c].h + i * hs.time, v);
      }
    for (int c = 0; c < n; ++c) s[c] = st[c];
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
