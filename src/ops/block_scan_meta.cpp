// Meta backend of the 2x2 block scan ops: shapes and dtypes only (fake tensors,
// torch.compile, torch.library.opcheck).
#include <torch/library.h>

#include "ops/block_scan_prepare.h"

namespace seqpar::ops {
namespace {

std::tuple<at::Tensor, at::Tensor> block_scan_meta(const at::Tensor& A, const at::Tensor& b,
                                                   const std::optional<at::Tensor>& h0, bool,
                                                   bool) {
  check_block_inputs("seqpar::block_scan", A, b, "b", h0);
  return {empty_block_like(b), at::empty(block_state_shape(b), b.options())};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> block_scan_backward_meta(
    const at::Tensor& A, const at::Tensor& h, const std::optional<at::Tensor>& h0,
    const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, bool, bool) {
  check_block_inputs("seqpar::block_scan_backward", A, h, "h", h0);
  return {at::empty(A.sizes(), A.options()), empty_block_like(h),
          at::empty(block_state_shape(h), h.options())};
}

std::tuple<at::Tensor, at::Tensor> block_scan_summary_meta(const at::Tensor& A,
                                                           const at::Tensor& b, bool, bool) {
  check_block_inputs("seqpar::block_scan_summary", A, b, "b", std::nullopt);
  std::vector<int64_t> m = block_state_shape(b);
  m.push_back(2);
  return {at::empty(m, A.options()), at::empty(block_state_shape(b), b.options())};
}

}  // namespace

TORCH_LIBRARY_IMPL(seqpar, Meta, m) {
  m.impl("block_scan", &block_scan_meta);
  m.impl("block_scan_backward", &block_scan_backward_meta);
  m.impl("block_scan_summary", &block_scan_summary_meta);
}

}  // namespace seqpar::ops
