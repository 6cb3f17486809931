// Backward scan on the CPU (the adjoint of scan_forward.cpp) as a policy of the scan engine.
//
// The engine's step k visits time t = T-1-k. The carried state is u = conj(a_t) * lam_t, the
// adjoint handed to step t-1, so that each step has the plain affine form the engine composes
// (u' = conj(a_t) * u + conj(a_t) * g_t) with no shift of `a` by one:
//   lam_t = g_t + u,  grad_b_t = lam_t,  grad_a_t = lam_t * conj(h_{t-1}),  u' = conj(a_t) lam_t
// starting from u = grad_h_last; the final u is conj(a_0) lam_0 = grad_h0. Only the step at
// t = 0 reads h0 instead of h_{t-1}, which is why kSpecialLast is set.
#include "dispatch.h"
#include "scan_engine.h"
#include "seqpar/kernels/cpu_scan.h"

namespace seqpar::kernels::cpu {
namespace {

template <class Storage>
struct BackwardPolicy {
  using S = Storage;
  using Acc = acc_t<S>;
  static constexpr bool kSpecialLast = true;

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
  void coef_input(const Lane& L, int64_t k, int64_t l, Acc& c, Acc& x) const {
    c = conj(load(L.a - k * as.time + l));
    x = c * load(L.g - k * gs.time + l);
  }
  Acc step(const Lane& L, int64_t k, int64_t l, Acc u) const {
    const Acc lam = load(L.g - k * gs.time + l) + u;
    store(L.gb - k * gbs.time + l, lam);
    store(L.ga - k * gas.time + l, lam * conj(load(L.hp - k * hs.time + l)));
    return conj(load(L.a - k * as.time + l)) * lam;
  }
  Acc step_last(const Lane& L, int64_t k, int64_t l, Acc u) const {
    const Acc lam = load(L.g - k * gs.time + l) + u;
    store(L.gb - k * gbs.time + l, lam);
    const Acc hprev = L.h0 ? load(L.h0 + l * h0s.channel) : acc_zero<Acc>();
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
  const ScanShape& n = params.shape;
  dispatch_scalar_kind(params.dtype, "seqpar::kernels::cpu::scan_backward", [&](auto tag) {
    using S = decltype(tag);
    const BackwardPolicy<S> policy(params);
    if (n.time == 0) {
      for (int64_t bi = 0; bi < n.batch; ++bi)
        for (int64_t c = 0; c < n.channels; ++c) policy.finish(bi, c, policy.initial(bi, c));
      return;
    }
    engine::run_scan(policy, n.batch, n.time, n.channels, params.num_threads);
  });
}

}  // namespace seqpar::kernels::cpu
