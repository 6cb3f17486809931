// The documented C++ functions of seqpar/block_scan.h: calls through the dispatcher, so C++
// programs get the device dispatch, checks and autograd of torch.ops.seqpar.block_scan.
#include "seqpar/block_scan.h"

#include "ops/determinism.h"
#include "ops/op_handles.h"

namespace seqpar {

std::tuple<at::Tensor, at::Tensor> block_scan(const at::Tensor& A, const at::Tensor& b,
                                              const std::optional<at::Tensor>& h0,
                                              const BlockScanOptions& options) {
  const ops::DeterministicScope deterministic(options.deterministic);
  return ops::block_scan_op().call(A, b, h0, options.reverse, options.lower_triangular);
}

std::tuple<at::Tensor, at::Tensor> block_scan_summary(const at::Tensor& A, const at::Tensor& b,
                                                      const BlockScanOptions& options) {
  return ops::block_scan_summary_op().call(A, b, options.reverse, options.lower_triangular);
}

}  // namespace seqpar
