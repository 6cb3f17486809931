// Meta backend: output shapes and dtypes only, so that fake tensors, torch.compile and
// torch.library.opcheck can trace the ops without running them.
#include <torch/library.h>

#include "ops/kernel_params.h"
#include "ops/packed_sequences.h"
#include "ops/scan_checks.h"

namespace seqpar::ops {
namespace {

at::Tensor empty_state(const at::Tensor& seq,
                       const std::optional<at::Tensor>& cu_seqlens = std::nullopt) {
  std::vector<int64_t> shape{cu_seqlens ? cu_seqlens->size(0) - 1 : seq.size(0)};
  for (int64_t d = 2; d < seq.dim(); ++d) shape.push_back(seq.size(d));
  return at::empty(shape, seq.options());
}

std::tuple<at::Tensor, at::Tensor> scan_meta(const at::Tensor& a, const at::Tensor& b,
                                             const std::optional<at::Tensor>& h0, bool,
                                             const std::optional<at::Tensor>& cu_seqlens) {
  const auto cu = check_scan_cu_seqlens("seqpar::scan", cu_seqlens, a);
  check_scan_inputs("seqpar::scan", a, b, h0, cu);
  return {empty_sequence_like(a), empty_state(a, cu)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> scan_backward_meta(
    const at::Tensor& a, const at::Tensor& h, const std::optional<at::Tensor>& h0,
    const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, bool,
    const std::optional<at::Tensor>& cu_seqlens) {
  const auto cu = check_scan_cu_seqlens("seqpar::scan_backward", cu_seqlens, a);
  check_scan_inputs("seqpar::scan_backward", a, h, h0, cu);
  return {empty_sequence_like(a), empty_sequence_like(a), empty_state(a, cu)};
}

std::tuple<at::Tensor, at::Tensor> scan_summary_meta(const at::Tensor& a, const at::Tensor& b,
                                                     bool) {
  check_scan_inputs("seqpar::scan_summary", a, b, std::nullopt);
  return {empty_state(a), empty_state(a)};
}

}  // namespace

TORCH_LIBRARY_IMPL(seqpar, Meta, m) {
  m.impl("scan", &scan_meta);
  m.impl("scan_backward", &scan_backward_meta);
  m.impl("scan_summary", &scan_summary_meta);
}

}  // namespace seqpar::ops
