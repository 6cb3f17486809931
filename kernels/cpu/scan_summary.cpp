// Propagator summary (A, B) of a whole slice on the CPU: the reduction step of the
// sequence-parallel scan (design.md section 2). It reuses the forward policy's reads; the
// engine's summary path composes cache-sized tiles in parallel and folds them in order.
#include "dispatch.h"
#include "scan_engine.h"
#include "seqpar/kernels/cpu_scan.h"

namespace seqpar::kernels::cpu {
namespace {

template <class Storage>
struct SummaryPolicy {
  using S = Storage;
  using Acc = acc_t<S>;
  static constexpr bool kSpecialLast = false;
  const S* a;
  const S* b;
  Strides3 as, bs;
  struct Lane {
    const S* a;
    const S* b;
  };
  bool unit_channel_stride() const { return as.channel == 1 && bs.channel == 1; }
  Lane lane(int64_t bi, int64_t c) const {
    return {a + bi * as.batch + c * as.channel, b + bi * bs.batch + c * bs.channel};
  }
  void coef_input(const Lane& L, int64_t k, int64_t l, Acc& c, Acc& x) const {
    c = load(L.a + k * as.time + l);
    x = load(L.b + k * bs.time + l);
  }
  Acc step(const Lane&, int64_t, int64_t, Acc s) const { return s; }
  Acc step_last(const Lane&, int64_t, int64_t, Acc s) const { return s; }
  Acc initial(int64_t, int64_t) const { return acc_zero<Acc>(); }
  void finish(int64_t, int64_t, Acc) const {}
};

}  // namespace

void scan_summary(const ScanSummaryParams& params) {
  const ScanShape& n = params.shape;
  dispatch_scalar_kind(params.dtype, "seqpar::kernels::cpu::scan_summary", [&](auto tag) {
    using S = decltype(tag);
    using Acc = acc_t<S>;
    SummaryPolicy<S> policy{static_cast<const S*>(params.a.data),
                            static_cast<const S*>(params.b.data), params.a.stride,
                            params.b.stride};
    S* A = static_cast<S*>(params.A.data);
    S* B = static_cast<S*>(params.B.data);
    auto out = [&](int64_t bi, int64_t c, Acc sa, Acc sb) {
      store(A + bi * params.A.stride.batch + c * params.A.stride.channel, sa);
      store(B + bi * params.B.stride.batch + c * params.B.stride.channel, sb);
    };
    if (n.time == 0) {
      for (int64_t bi = 0; bi < n.batch; ++bi)
        for (int64_t c = 0; c < n.channels; ++c) out(bi, c, acc_one<Acc>(), acc_zero<Acc>());
      return;
    }
    engine::run_summary(policy, n.batch, n.time, n.channels, params.num_threads, out);
  });
}

}  // namespace seqpar::kernels::cpu
