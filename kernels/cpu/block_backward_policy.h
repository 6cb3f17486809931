// The adjoint of the 2x2 block scan (block_scan_params.h) as a policy of the scan engine, the
// block form of scan_backward.cpp's policy. The engine's step k visits time t = T-1-k and
// carries u = A_t^T lam_t, the adjoint handed to step t-1, so that every step is the affine map
// u' = A_t^T u + A_t^T g_t the engine composes:
//   lam_t = g_t + u,  grad_b_t = lam_t,  grad_A_t = lam_t h_{t-1}^T,  u' = A_t^T lam_t
// from u = grad_h_last; the final u is A_0^T lam_0 = grad_h0. The step at t = 0 reads h0 for
// h_{t-1} (kSpecialLast). kLower: A[0][1] is not read and grad_A[0][1] is written as zero.
#pragma once

#include "target.h"

#include "block_step_simd.h"
#include "block_types.h"
#include "scan_engine.h"
#include "seqpar/kernels/block_scan_params.h"

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET {

template <class Storage, bool kLower>
struct BlockBackwardPolicy {
  using S = Storage;
  using T = acc_t<S>;
  using Acc = Vec2<T>;
  using Map = Mat2<T>;
  static constexpr bool kSpecialLast = true;
  static constexpr bool kReversedSteps = true;  // step k is time T-1-k
  static constexpr bool kHasContiguous = false;
  // A descending walk visits a step's lanes in descending blocks of 128 bytes of A (its widest
  // operand: 8 float32 lanes), as the diagonal scan does per operand (scan_engine.h,
  // for_lane_blocks): blocks of 128 bytes of the 2-element operands left A's stream in 512-byte
  // upward runs, and the backward ran at 15% of triad.
  static constexpr int kDescendingLanes =
      engine::descending_block<S>() / 4 > 0 ? engine::descending_block<S>() / 4 : 1;
  static constexpr int kStepInputs = 8;  // A (4), h_{t-1} (2) and g (2) per step
  // Packed steps: 2 sequences per time-inner group (10 memory streams). Four (20 streams) ran
  // the backward of (64, 2^16, 1) at 9-11 GB/s, two at 15-18, three at 12-18 (float32, one
  // thread, avx2, alternating runs; docs/block_scan.md).
  static constexpr int kContiguousTimeLanes = 2;

  int64_t Tn;
  const S* A;
  const S* h;
  const S* h0;
  const S* g;
  const S* g_last;
  S* gA;
  S* gb;
  S* gh0;
  Strides3 As, hs, gs, gAs, gbs;
  Strides2 h0s, gls, gh0s;
  S zero_storage[2] = {};

  // Pointers at step k = 0, i.e. time T-1 (hp: time T-2, the previous state).
  struct Lane {
    const S* A;
    const S* hp;
    const S* g;
    S* gA;
    S* gb;
    const S* h0;
  };

  explicit BlockBackwardPolicy(const BlockScanBackwardParams& p)
      : Tn(p.shape.time),
        A(static_cast<const S*>(p.A.data)),
        h(static_cast<const S*>(p.h.data)),
        h0(static_cast<const S*>(p.h0.data)),
        g(static_cast<const S*>(p.grad_h.data)),
        g_last(static_cast<const S*>(p.grad_h_last.data)),
        gA(static_cast<S*>(p.grad_A.data)),
        gb(static_cast<S*>(p.grad_b.data)),
        gh0(static_cast<S*>(p.grad_h0.data)),
        As(p.A.stride), hs(p.h.stride), gs(p.grad_h.stride), gAs(p.grad_A.stride),
        gbs(p.grad_b.stride), h0s(p.h0.stride), gls(p.grad_h_last.stride),
        gh0s(p.grad_h0.stride) {
    if (g == nullptr) {  // absent grad_h: zeros through a stride-0 view of one pair
      g = zero_storage;
      gs = Strides3{0, 0, 0};
    }
  }
  BlockBackwardPolicy(const BlockBackwardPolicy&) = delete;

  bool unit_channel_stride() const {
    return As.channel == 4 && hs.channel == 2 && gAs.channel == 4 && gbs.channel == 2;
  }
  Lane lane(int64_t bi, int64_t c) const {
    const int64_t t = Tn - 1;
    return {A + bi * As.batch + c * As.channel + t * As.time,
            h + bi * hs.batch + c * hs.channel + (t - 1) * hs.time,
            g + bi * gs.batch + c * gs.channel + t * gs.time,
            gA + bi * gAs.batch + c * gAs.channel + t * gAs.time,
            gb + bi * gbs.batch + c * gbs.channel + t * gbs.time,
            h0 ? h0 + bi * h0s.batch + c * h0s.channel : nullptr};
  }
  Lane advance(const Lane& L, int64_t k) const {
    return {L.A - k * As.time, L.hp - k * hs.time, L.g - k * gs.time, L.gA - k * gAs.time,
            L.gb - k * gbs.time, L.h0};
  }
  // Nonzero when every operand's steps are packed one after another (block_forward_policy.h):
  // fewer sequences per time-inner group. The sign is the step order's direction in memory.
  int unit_time_direction() const {
    const int64_t d = As.time / 4;
    if ((d != 1 && d != -1) || As.time != 4 * d || hs.time != 2 * d ||
        (gs.time != 2 * d && gs.time != 0) || gAs.time != 4 * d || gbs.time != 2 * d)
      return 0;
    return static_cast<int>(-d);
  }
  void contig_aggregate(const Lane&, int64_t, int64_t, Map&, Acc&) const {}
  void contig_run(const Lane&, int64_t, int64_t, Acc&) const {}
  bool time_descends() const { return As.time > 0; }

  // One step: the lane's lam, its gradients, and the u handed to the step before.
  static Acc step(const S* __restrict pA, const S* __restrict pg, S* __restrict pgA,
                  S* __restrict pgb, Acc u, Acc hp) {
    const Acc lam = load_vec(pg) + u;
    store_vec(pgb, lam);
    store_map(pgA, Map{lam.x * hp.x, kLower ? T(0) : lam.x * hp.y, lam.y * hp.x, lam.y * hp.y});
    return transpose(load_map<kLower>(pA)) * lam;
  }

  // ---- channel-inner: packed channels (g read with its own channel stride, 0 when absent) --
  int64_t g_lane() const { return gs.channel; }
  void channel_aggregate(const Lane& L, int n, bool descending, int64_t k0, int64_t k1, Map* M,
                         Acc* E) const {
    for (int l = 0; l < n; ++l) {
      M[l] = acc_one<Map>();
      E[l] = acc_zero<Acc>();
    }
    const int64_t gl = g_lane();
    for (int64_t k = k0; k < k1; ++k) {
      const S* pA = L.A - k * As.time;
      const S* pg = L.g - k * gs.time;
      engine::for_lane_blocks<kDescendingLanes>(n, descending, [&](int l0, int l1) {
        if constexpr (block_simd::kVectorStep<S>) {
          for (int l = l0; l < l1; ++l)  // Mat2 row-major, Vec2 (x, y): contiguous doubles
            block_simd::backward_aggregate_step<kLower>(pA + 4 * l, pg + gl * l, &M[l].m00,
                                                        &E[l].x);
          return;
        }
        for (int l = l0; l < l1; ++l) {
          const Map at = transpose(load_map<kLower>(pA + 4 * l));
          M[l] = at * M[l];
          E[l] = at * (E[l] + load_vec(pg + gl * l));
        }
      });
    }
  }
  // Lanes [l0, l1) of one step; kG: g's channel stride when known at compile time (2, packed),
  // else 0 and gl says it (0 when g is absent), so that the packed case vectorizes.
  template <int kG>
  static void run_lanes(const S* __restrict pA, const S* __restrict php, const S* __restrict pg,
                        S* __restrict pgA, S* __restrict pgb, Acc* __restrict s, int l0, int l1,
                        int64_t gl) {
    const int64_t g_step = kG ? kG : gl;
    if constexpr (block_simd::kVectorStep<S>) {
      namespace hn = block_simd::hn;
      const block_simd::D2 d;
      for (int l = l0; l < l1; ++l)  // one lane's step per vector (Vec2: x, y in order)
        hn::StoreU(block_simd::backward_step<kLower>(pA + 4 * l, pg + g_step * l, php + 2 * l,
                                                     pgA + 4 * l, pgb + 2 * l,
                                                     hn::LoadU(d, &s[l].x)),
                   d, &s[l].x);
      return;
    }
    for (int l = l0; l < l1; ++l) {  // component by component, as in the forward policy
      const Acc u =
          step(pA + 4 * l, pg + g_step * l, pgA + 4 * l, pgb + 2 * l, s[l], load_vec(php + 2 * l));
      s[l].x = u.x;
      s[l].y = u.y;
    }
  }
  void channel_run(const Lane& L, int n, bool descending, int64_t k0, int64_t k1, Acc* s) const {
    const int64_t gl = g_lane();
    for (int64_t k = k0; k < k1; ++k) {
      const S* pA = L.A - k * As.time;
      const S* php = L.hp - k * hs.time;
      const S* pg = L.g - k * gs.time;
      S* pgA = L.gA - k * gAs.time;
      S* pgb = L.gb - k * gbs.time;
      engine::for_lane_blocks<kDescendingLanes>(n, descending, [&](int l0, int l1) {
        if (gl == 2)
          run_lanes<2>(pA, php, pg, pgA, pgb, s, l0, l1, 2);
        else
          run_lanes<0>(pA, php, pg, pgA, pgb, s, l0, l1, gl);
      });
    }
  }

  // ---- time-inner chains ---------------------------------------------------------------------
  void chains_aggregate(const Lane* chains, int n, int64_t len, Map* M, Acc* E) const {
    for (int c = 0; c < n; ++c) {
      M[c] = acc_one<Map>();
      E[c] = acc_zero<Acc>();
    }
    for (int64_t i = 0; i < len; ++i)
      for (int c = 0; c < n; ++c) {
        const Map at = transpose(load_map<kLower>(chains[c].A - i * As.time));
        M[c] = at * M[c];
        E[c] = at * (E[c] + load_vec(chains[c].g - i * gs.time));
      }
  }
  // Chains advance together for ILP, their count fixed at compile time (scan_engine.h,
  // for_fixed_chain_runs) so that each chain's u stays in registers.
  void chains_run(const Lane* chains, int n, int64_t len, Acc* s) const {
    engine::for_fixed_chain_runs(n, [&](auto k, int c0) {
      chains_run_fixed<decltype(k)::value>(chains + c0, len, s + c0);
    });
  }
  template <int kN>
  void chains_run_fixed(const Lane* chains, int64_t len, Acc* s) const {
    const S* pA[kN];
    const S* php[kN];
    const S* pg[kN];
    S* pgA[kN];
    S* pgb[kN];
    for (int c = 0; c < kN; ++c) {
      pA[c] = chains[c].A;
      php[c] = chains[c].hp;
      pg[c] = chains[c].g;
      pgA[c] = chains[c].gA;
      pgb[c] = chains[c].gb;
    }
    const int64_t sA = As.time, sh = hs.time, sg = gs.time, sgA = gAs.time, sgb = gbs.time;
    const auto prefetch = [&](int64_t i) {
#pragma GCC unroll 8
      for (int c = 0; c < kN; ++c) {  // steps descend: stride -s
        engine::prefetch_ahead(pA[c] - i * sA, -sA);
        engine::prefetch_ahead(pg[c] - i * sg, -sg);
        engine::prefetch_ahead(php[c] - i * sh, -sh);
        engine::prefetch_ahead<true>(pgA[c] - i * sgA, -sgA);
        engine::prefetch_ahead<true>(pgb[c] - i * sgb, -sgb);
      }
    };
    if constexpr (block_simd::kVectorStep<S>) {
      namespace hn = block_simd::hn;
      const block_simd::D2 d;
      block_simd::ChainVectors<S, kN> u;
      for (int c = 0; c < kN; ++c) u[c] = hn::LoadU(d, &s[c].x);  // Vec2: x, y in order
      for (int64_t i = 0; i < len; ++i) {
        if (i % engine::kPrefetchEvery == 0) prefetch(i);
#pragma GCC unroll 8
        for (int c = 0; c < kN; ++c)
          u[c] = block_simd::backward_step<kLower>(pA[c] - i * sA, pg[c] - i * sg,
                                                   php[c] - i * sh, pgA[c] - i * sgA,
                                                   pgb[c] - i * sgb, u[c]);
      }
      for (int c = 0; c < kN; ++c) hn::StoreU(u[c], d, &s[c].x);
    } else {
      T ux[kN], uy[kN];
      for (int c = 0; c < kN; ++c) {
        ux[c] = s[c].x;
        uy[c] = s[c].y;
      }
      for (int64_t i = 0; i < len; ++i) {
        if (i % engine::kPrefetchEvery == 0) prefetch(i);
#pragma GCC unroll 8
        for (int c = 0; c < kN; ++c) {
          const Acc u = step(pA[c] - i * sA, pg[c] - i * sg, pgA[c] - i * sgA, pgb[c] - i * sgb,
                             Acc{ux[c], uy[c]}, load_vec(php[c] - i * sh));
          ux[c] = u.x;
          uy[c] = u.y;
        }
      }
      for (int c = 0; c < kN; ++c) s[c] = Acc{ux[c], uy[c]};
    }
  }

  // Time 0: h_{t-1} is h0 (zeros when absent). l: the lane of a channel-inner group (0 for a
  // chain, whose Lane already points at its channel); row is 0 (no segments).
  Acc step_last(const Lane& L, int64_t k, int64_t l, int64_t row, Acc u) const {
    const Acc hp =
        L.h0 ? load_vec(L.h0 + row * h0s.batch + l * h0s.channel) : acc_zero<Acc>();
    return step(L.A - k * As.time + 4 * l, L.g - k * gs.time + g_lane() * l,
                L.gA - k * gAs.time + 4 * l, L.gb - k * gbs.time + 2 * l, u, hp);
  }
  Acc initial(int64_t bi, int64_t c) const {
    return g_last ? load_vec(g_last + bi * gls.batch + c * gls.channel) : acc_zero<Acc>();
  }
  void finish(int64_t bi, int64_t c, Acc u) const {
    if (gh0) store_vec(gh0 + bi * gh0s.batch + c * gh0s.channel, u);
  }
};

}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET
