// Forward scan on the CPU: h_t = a_t * h_{t-1} + b_t (scan_params.h), as a policy of the
// scan engine (scan_engine.h), which does the threading, vectorization and time tiling.
#include "dispatch.h"
#include "scan_engine.h"
#include "seqpar/kernels/cpu_scan.h"

namespace seqpar::kernels::cpu {
namespace {

template <class Storage>
struct ForwardPolicy {
  using S = Storage;
  using Acc = acc_t<S>;
  static constexpr bool kSpecialLast = false;

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
    return as.channel == 1 && bs.channel == 1 && hs.channel == 1;
  }
  Lane lane(int64_t bi, int64_t c) const {
    return {a + bi * as.batch + c * as.channel, b + bi * bs.batch + c * bs.channel,
            h + bi * hs.batch + c * hs.channel};
  }
  void coef_input(const Lane& L, int64_t k, int64_t l, Acc& c, Acc& x) const {
    c = load(L.a + k * as.time + l);
    x = load(L.b + k * bs.time + l);
  }
  Acc step(const Lane& L, int64_t k, int64_t l, Acc s) const {
    const Acc next = load(L.a + k * as.time + l) * s + load(L.b + k * bs.time + l);
    store(L.h + k * hs.time + l, next);
    return next;
  }
  Acc step_last(const Lane& L, int64_t k, int64_t l, Acc s) const { return step(L, k, l, s); }
  Acc initial(int64_t bi, int64_t c) const {
    return h0 ? load(h0 + bi * h0s.batch + c * h0s.channel) : acc_zero<Acc>();
  }
  void finish(int64_t bi, int64_t c, Acc s) const {
    store(h_last + bi * hls.batch + c * hls.channel, s);
  }
};

}  // namespace

void scan_forward(const ScanForwardParams& params) {
  const ScanShape& n = params.shape;
  dispatch_scalar_kind(params.dtype, "seqpar::kernels::cpu::scan_forward", [&](auto tag) {
    using S = decltype(tag);
    const ForwardPolicy<S> policy(params);
    if (n.time == 0) {
      for (int64_t bi = 0; bi < n.batch; ++bi)
        for (int64_t c = 0; c < n.channels; ++c) policy.finish(bi, c, policy.initial(bi, c));
      return;
    }
    engine::run_scan(policy, n.batch, n.time, n.channels, params.num_threads);
  });
}

}  // namespace seqpar::kernels::cpu
