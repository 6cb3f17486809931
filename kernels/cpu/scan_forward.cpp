// Forward scan on the CPU: h_t = a_t * h_{t-1} + b_t (scan_params.h), as a policy of the
// scan engine (scan_engine.h), which does the threading, vectorization and time tiling.
#include "dispatch.h"
#include "forward_policy.h"
#include "seqpar/kernels/cpu_scan.h"

namespace seqpar::kernels::cpu {

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
