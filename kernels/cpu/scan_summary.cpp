// Propagator summary (A, B) of a whole slice on the CPU: the reduction step of the
// sequence-parallel scan (docs/design.md section 2). It is the forward policy's aggregate; the
// engine's summary path composes cache-sized tiles in parallel and folds them in order.
#include "dispatch.h"
#include "forward_policy.h"
#include "seqpar/kernels/cpu_scan.h"
#include "target.h"

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET {
void scan_summary(const ScanSummaryParams& params) {
  const ScanShape& n = params.shape;
  dispatch_scalar_kind(params.dtype, "seqpar::kernels::cpu::scan_summary", [&](auto tag) {
    using S = decltype(tag);
    using Acc = acc_t<S>;
    ScanForwardParams fp;  // the summary only reads a and b through the forward policy
    fp.a = params.a;
    fp.b = params.b;
    const ForwardPolicy<S> policy(fp);
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

}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET
