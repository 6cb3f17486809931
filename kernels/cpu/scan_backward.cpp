// Backward scan on the CPU (the adjoint of scan_forward.cpp) as a policy of the scan engine.
//
// The engine's step k visits time t = T-1-k. The carried state is u = conj(a_t) * lam_t, the
// adjoint handed to step t-1, so that each step has the plain affine form the engine composes
// (u' = conj(a_t) * u + conj(a_t) * g_t) with no shift of `a` by one:
//   lam_t = g_t + u,  grad_b_t = lam_t,  grad_a_t = lam_t * conj(h_{t-1}),  u' = conj(a_t) lam_t
// starting from u = grad_h_last; the final u is conj(a_0) lam_0 = grad_h0. Only the step at
// t = 0 reads h0 instead of h_{t-1}, which is why kSpecialLast is set. With segments
// (scan_segments.h) every segment's first step in time is such a step, with its own h0 row,
// and the engine starts each segment (in step order, its last step in time) from its
// grad_h_last row.
#include <type_traits>

#include "scan_engine.h"
#include "vector_scan.h"
#include "seqpar/kernels/cpu_scan.h"
#include "target.h"

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET {
namespace {

template <class Storage>
struct BackwardPolicy {
  using S = Storage;
  using Acc = acc_t<S>;
  using Map = Acc;  // a step's map is a scalar of the state's type
  static constexpr bool kSpecialLast = true;
  static constexpr bool kReversedSteps = true;  // step k is time T-1-k

  int64_t T;
  const S* a;
  const S* h;
  const S* h0;
  const S* g;
  const S* g_last;
  S* ga;
  S* gb;
  S* gh0;
  Strides3 as, hs, gs, gas, gbs;
  Strides2 h0s, gls, gh0s;
  S zero_storage{};

  // Pointers at step k = 0, i.e. time T-1 (hp: time T-2, the previous state).
  struct Lane {
    const S* a;
    const S* hp;
    const S* g;
    S* ga;
    S* gb;
    const S* h0;
  };

  explicit BackwardPolicy(const ScanBackwardParams& p)
      : T(p.shape.time),
        a(static_cast<const S*>(p.a.data)),
        h(static_cast<const S*>(p.h.data)),
        h0(static_cast<const S*>(p.h0.data)),
        g(static_cast<const S*>(p.grad_h.data)),
        g_last(static_cast<const S*>(p.grad_h_last.data)),
        ga(static_cast<S*>(p.grad_a.data)),
        gb(static_cast<S*>(p.grad_b.data)),
        gh0(static_cast<S*>(p.grad_h0.data)),
        as(p.a.stride), hs(p.h.stride), gs(p.grad_h.stride), gas(p.grad_a.stride),
        gbs(p.grad_b.stride), h0s(p.h0.stride), gls(p.grad_h_last.stride),
        gh0s(p.grad_h0.stride) {
    if (g == nullptr) {  // absent grad_h: read zeros through a stride-0 view of one element
      g = &zero_storage;
      gs = Strides3{0, 0, 0};
    }
  }
  BackwardPolicy(const BackwardPolicy&) = delete;

  bool unit_channel_stride() const {
    return as.channel == 1 && hs.channel == 1 && gs.channel == 1 && gas.channel == 1 &&
           gbs.channel == 1;
  }
  Lane lane(int64_t bi, int64_t c) const {
    const int64_t t = T - 1;
    return {a + bi * as.batch + c * as.channel + t * as.time,
            h + bi * hs.batch + c * hs.channel + (t - 1) * hs.time,
            g + bi * gs.batch + c * gs.channel + t * gs.time,
            ga + bi * gas.batch + c * gas.channel + t * gas.time,
            gb + bi * gbs.batch + c * gbs.channel + t * gbs.time,
            h0 ? h0 + bi * h0s.batch + c * h0s.channel : nullptr};
  }
  // Step k is time T-1-k: every pointer moves by minus its time stride.
  Lane advance(const Lane& L, int64_t k) const {
    return {L.a - k * as.time, L.hp - k * hs.time, L.g - k * gs.time,
            L.ga - k * gas.time, L.gb - k * gbs.time, L.h0};
  }

  static constexpr bool kHasContiguous = simd::kVectorStorage<S>;
  // Direction of memory in step order (+1 / -1) when every operand is time-contiguous, else 0.
  int unit_time_direction() const {
    const int64_t d = as.time;
    if ((d != 1 && d != -1) || hs.time != d || gs.time != d || gas.time != d || gbs.time != d)
      return 0;
    return static_cast<int>(-d);
  }
  void contig_aggregate(const Lane& L, int64_t k0, int64_t k1, Acc& A, Acc& B) const {
    if constexpr (kHasContiguous) {
      if (as.time < 0)
        this->template contig_aggregate_dir<1>(L, k0, k1, A, B);
      else
        this->template contig_aggregate_dir<-1>(L, k0, k1, A, B);
    }
  }
  void contig_run(const Lane& L, int64_t k0, int64_t k1, Acc& s) const {
    if constexpr (kHasContiguous) {
      if (as.time < 0)
        this->template contig_run_dir<1>(L, k0, k1, s);
      else
        this->template contig_run_dir<-1>(L, k0, k1, s);
    }
  }
  // u' = conj(a) * (u + g) per step (conj is the identity for real dtypes).
  template <int kDir>
  void contig_aggregate_dir(const Lane& L, int64_t k0, int64_t k1, Acc& A, Acc& B) const {
    using V = simd::Vec<Acc>;
    const S* pa = L.a + k0 * kDir;
    const S* pg = L.g + k0 * kDir;
    const int64_t n = k1 - k0;
    // B = sum_t g_t * c_t * ... * c_{n-1} with c = conj(a): g weighted by the vectors' own c
    // (simd::suffix_weighted_sum, as the forward summary).
    const int64_t vectors = n / V::kLanes;
    simd::suffix_weighted_sum<S, kDir, /*kConjW=*/true>(pa, pg, vectors, A, B);
    int64_t k = vectors * V::kLanes;
    for (; k < n; ++k) {
      const Acc x = conj(load(pa + k * kDir));
      A = x * A;
      B = x * (B + load(pg + k * kDir));
    }
  }
  // The run is written for lam = u entering a step plus g (grad_b): lam_k = conj(a_{k-1})
  // lam_{k-1} + g_k, whose coefficient is the previous step's a. Loading a one step behind
  // keeps every load and store in memory order with no lane shift, and the vector loop is the
  // forward scan's. The first step, whose entry is the state u, runs before it.
  template <int kDir>
  void contig_run_dir(const Lane& L, int64_t k0, int64_t k1, Acc& u) const {
    using V = simd::Vec<Acc>;
    const S* pa = L.a + k0 * kDir;
    const S* ph = L.hp + k0 * kDir;
    const S* pg = L.g + k0 * kDir;
    S* pga = L.ga + k0 * kDir;
    S* pgb = L.gb + k0 * kDir;
    const int64_t n = k1 - k0;
    if (n <= 0) return;
    Acc lam = load(pg) + u;
    store(pgb, lam);
    store(pga, lam * conj(load(ph)));
    auto vlam = V::set1(lam);
    int64_t k = 1;
    for (; k + V::kLanes <= n; k += V::kLanes) {
      auto vc = V::conj(simd::load_steps<S, kDir>(pa + (k - 1) * kDir));
      auto vg = simd::load_steps<S, kDir>(pg + k * kDir);
      simd::compose_steps<Acc, kDir>(vc, vg);
      const auto out = V::fma(vc, vlam, vg);  // lam of each step
      simd::store_steps<S, kDir>(pgb + k * kDir, out);
      simd::store_steps<S, kDir>(
          pga + k * kDir, V::mul(out, V::conj(simd::load_steps<S, kDir>(ph + k * kDir))));
      // The carry, as forward's: one FMA on the loop-carried path (equal to out's last step).
      vlam = V::fma(V::template last_step<kDir>(vc), vlam, V::template last_step<kDir>(vg));
    }
    lam = V::lane0(vlam);
    for (; k < n; ++k) {
      lam = conj(load(pa + (k - 1) * kDir)) * lam + load(pg + k * kDir);
      store(pgb + k * kDir, lam);
      store(pga + k * kDir, lam * conj(load(ph + k * kDir)));
    }
    u = conj(load(pa + (n - 1) * kDir)) * lam;
  }

  // Whether step k+1 (time t-1) lies below step k in memory: the usual case.
  bool time_descends() const { return as.time > 0; }

  // The same loop skeletons as ForwardPolicy's (forward_policy.h), walking time backwards over
  // (a, grad_h) instead of forwards over (a, b): kept as two copies on purpose, since each loop
  // is written with its own restrict locals and step direction so that it vectorizes, and a
  // shared template over direction and operands would hide exactly what the compiler needs.
  void channel_aggregate(const Lane& L, int n, bool descending, int64_t k0, int64_t k1, Acc* A,
                         Acc* B) const {
    Acc cA[engine::kChannelLanes], cB[engine::kChannelLanes];
    for (int l = 0; l < n; ++l) {
      cA[l] = acc_one<Acc>();
      cB[l] = acc_zero<Acc>();
    }
    const S* pa = L.a - k0 * as.time;
    const S* pg = L.g - k0 * gs.time;
    for (int64_t k = k0; k < k1; ++k, pa -= as.time, pg -= gs.time)
      engine::for_lane_blocks<engine::descending_block<S>()>(n, descending,
                              [&](int l0, int l1) { aggregate_lanes(pa, pg, cA, cB, l0, l1); });
    for (int l = 0; l < n; ++l) {
      A[l] = cA[l];
      B[l] = cB[l];
    }
  }

  void channel_run(const Lane& L, int n, bool descending, int64_t k0, int64_t k1,
                   Acc* s) const {
    Acc st[engine::kChannelLanes];
    for (int l = 0; l < n; ++l) st[l] = s[l];
    const S* pa = L.a - k0 * as.time;
    const S* ph = L.hp - k0 * hs.time;
    const S* pg = L.g - k0 * gs.time;
    S* pga = L.ga - k0 * gas.time;
    S* pgb = L.gb - k0 * gbs.time;
    for (int64_t k = k0; k < k1; ++k, pa -= as.time, ph -= hs.time, pg -= gs.time,
                 pga -= gas.time, pgb -= gbs.time)
      engine::for_lane_blocks<engine::descending_block<S>()>(n, descending, [&](int l0, int l1) {
        run_lanes(pa, ph, pg, pga, pgb, st, l0, l1);
      });
    for (int l = 0; l < n; ++l) s[l] = st[l];
  }

  // One step of lanes [l0, l1) of a channel-inner group (restrict parameters, so that the
  // compiler vectorizes without run-time overlap checks).
  static void aggregate_lanes(const S* __restrict pa, const S* __restrict pg,
                              Acc* __restrict cA, Acc* __restrict cB, int l0, int l1) {
    int l = l0;
    if constexpr (simd::kVectorLanes<S>) {  // real: conj is the identity
      using V = simd::Vec<Acc>;
      for (; l + V::kLanes <= l1; l += V::kLanes) {
        const auto c = simd::load_lanes(pa + l);
        V::storeu(cA + l, V::mul(c, V::loadu(cA + l)));
        V::storeu(cB + l, V::mul(c, V::add(V::loadu(cB + l), simd::load_lanes(pg + l))));
      }
    }
    for (; l < l1; ++l) {
      const Acc c = conj(load(pa + l));
      cA[l] = c * cA[l];
      cB[l] = c * (cB[l] + load(pg + l));
    }
  }
  static void run_lanes(const S* __restrict pa, const S* __restrict ph, const S* __restrict pg,
                        S* __restrict pga, S* __restrict pgb, Acc* __restrict st, int l0,
                        int l1) {
    int l = l0;
    if constexpr (simd::kVectorLanes<S>) {
      using V = simd::Vec<Acc>;
      for (; l + V::kLanes <= l1; l += V::kLanes) {
        const auto lam = V::add(simd::load_lanes(pg + l), V::loadu(st + l));
        simd::store_lanes(pgb + l, lam);
        simd::store_lanes(pga + l, V::mul(lam, simd::load_lanes(ph + l)));
        V::storeu(st + l, V::mul(simd::load_lanes(pa + l), lam));
      }
    }
    for (; l < l1; ++l) {
      const Acc lam = load(pg + l) + st[l];
      store(pgb + l, lam);
      store(pga + l, lam * conj(load(ph + l)));
      st[l] = conj(load(pa + l)) * lam;
    }
  }

  void chains_aggregate(const Lane* chains, int n, int64_t len, Acc* A, Acc* B) const {
    const S* pa[engine::kMaxChains];
    const S* pg[engine::kMaxChains];
    for (int c = 0; c < n; ++c) {
      pa[c] = chains[c].a;
      pg[c] = chains[c].g;
      A[c] = acc_one<Acc>();
      B[c] = acc_zero<Acc>();
    }
    const int64_t sa = as.time, sg = gs.time;
    for (int64_t i = 0; i < len; ++i)
      for (int c = 0; c < n; ++c) {
        const Acc x = conj(load(pa[c] - i * sa));
        A[c] = x * A[c];
        B[c] = x * (B[c] + load(pg[c] - i * sg));
      }
  }

  void chains_run(const Lane* chains, int n, int64_t len, Acc* s) const {
    const S* pa[engine::kMaxChains];
    const S* ph[engine::kMaxChains];
    const S* pg[engine::kMaxChains];
    S* pga[engine::kMaxChains];
    S* pgb[engine::kMaxChains];
    Acc st[engine::kMaxChains];
    for (int c = 0; c < n; ++c) {
      pa[c] = chains[c].a;
      ph[c] = chains[c].hp;
      pg[c] = chains[c].g;
      pga[c] = chains[c].ga;
      pgb[c] = chains[c].gb;
      st[c] = s[c];
    }
    const int64_t sa = as.time, sh = hs.time, sg = gs.time, sga = gas.time, sgb = gbs.time;
    for (int64_t i = 0; i < len; ++i)
      for (int c = 0; c < n; ++c) {
        const Acc lam = load(pg[c] - i * sg) + st[c];
        store(pgb[c] - i * sgb, lam);
        store(pga[c] - i * sga, lam * conj(load(ph[c] - i * sh)));
        st[c] = conj(load(pa[c] - i * sa)) * lam;
      }
    for (int c = 0; c < n; ++c) s[c] = st[c];
  }

  // The first step in time of the sequence, or of segment `row` (whose h_{t-1} is h0 row
  // `row`; row is 0 without segments, where L.h0 already points at the lane's batch row).
  Acc step_last(const Lane& L, int64_t k, int64_t l, int64_t row, Acc u) const {
    const Acc lam = load(L.g - k * gs.time + l) + u;
    store(L.gb - k * gbs.time + l, lam);
    const Acc hprev =
        L.h0 ? load(L.h0 + row * h0s.batch + l * h0s.channel) : acc_zero<Acc>();
    store(L.ga - k * gas.time + l, lam * conj(hprev));
    return conj(load(L.a - k * as.time + l)) * lam;
  }
  Acc initial(int64_t bi, int64_t c) const {
    return g_last ? load(g_last + bi * gls.batch + c * gls.channel) : acc_zero<Acc>();
  }
  void finish(int64_t bi, int64_t c, Acc u) const {
    if (gh0) store(gh0 + bi * gh0s.batch + c * gh0s.channel, u);
  }
};

}  // namespace

void scan_backward(const ScanBackwardParams& params) {
  engine::run_policy<BackwardPolicy>(params, "seqpar::kernels::cpu::scan_backward");
}

}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET
