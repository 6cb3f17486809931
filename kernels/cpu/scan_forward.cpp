// Forward scan on the CPU: h_t = a_t * h_{t-1} + b_t (scan_params.h), as a policy of the
// scan engine (scan_engine.h), which does the threading, vectorization and time tiling.
#include "forward_policy.h"
#include "seqpar/kernels/cpu_scan.h"
#include "target.h"

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET {

void scan_forward(const ScanForwardParams& params) {
  engine::run_policy<ForwardPolicy>(params, "seqpar::kernels::cpu::scan_forward");
}

}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET
