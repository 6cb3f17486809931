// The documented C++ functions of seqpar/scan.h: thin calls through the dispatcher, so C++
// programs get the same device dispatch, checks and autograd as torch.ops.seqpar.*.
#include "seqpar/scan.h"

#include "ops/determinism.h"
#include "ops/op_handles.h"
#include "seqpar/kernels/cpu_scan.h"

namespace seqpar {

std::tuple<at::Tensor, at::Tensor> scan(const at::Tensor& a, const at::Tensor& b,
                                        const std::optional<at::Tensor>& h0, bool reverse) {
  return ops::scan_op().call(a, b, h0, reverse, std::nullopt);
}

std::tuple<at::Tensor, at::Tensor> scan(const at::Tensor& a, const at::Tensor& b,
                                        const std::optional<at::Tensor>& h0,
                                        const ScanOptions& options) {
  const ops::DeterministicScope deterministic(options.deterministic);
  if (options.checkpoint_every == 0)
    return ops::scan_op().call(a, b, h0, options.reverse, options.cu_seqlens);
  return ops::scan_checkpointed_op().call(a, b, h0, options.reverse, options.checkpoint_every,
                                          options.cu_seqlens);
}

std::tuple<at::Tensor, at::Tensor> scan_summary(const at::Tensor& a, const at::Tensor& b,
                                                bool reverse) {
  return ops::scan_summary_op().call(a, b, reverse);
}

std::string cpu_capability() { return kernels::cpu::capability(); }

void set_cpu_capability_cap(const std::string& name) { kernels::cpu::set_capability_cap(name); }

}  // namespace seqpar
