// The contiguous-mode forward loop of float32 (ForwardPolicy<float>::contig_run_dir<1>) compiled
// alone, so that its instructions can be read and fed to llvm-mca (README.md in this folder).
#include "forward_policy.h"

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET {
void probe_run(const ForwardPolicy<float>& p, const ForwardPolicy<float>::Lane& L, int64_t k0,
               int64_t k1, double& s) {
  p.template contig_run_dir<1>(L, k0, k1, s);
}
}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET
