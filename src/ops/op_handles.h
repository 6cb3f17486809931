// Typed dispatcher handles of the seqpar ops, looked up once. Calling through the dispatcher
// (rather than a backend function) lets the device of the inputs pick CPU or CUDA.
#pragma once

#include <ATen/core/dispatch/Dispatcher.h>

#include <optional>
#include <tuple>

namespace seqpar::ops {

using ScanSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                   const std::optional<at::Tensor>&, bool,
                                                   const std::optional<at::Tensor>&);
using ScanCheckpointedSig = std::tuple<at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, bool, int64_t,
    const std::optional<at::Tensor>&);
using ScanBackwardSig = std::tuple<at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
    const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, bool,
    const std::optional<at::Tensor>&);
using ScanSummarySig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                          bool);
using BlockScanSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                        const std::optional<at::Tensor>&, bool,
                                                        bool);
using BlockScanBackwardSig = std::tuple<at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
    const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, bool, bool);
using BlockScanSummarySig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&,
                                                               const at::Tensor&, bool, bool);

// The ops take absent tensors as nullopt; autograd hands them over as undefined tensors.
inline std::optional<at::Tensor> defined_or_null(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

template <class Sig>
c10::TypedOperatorHandle<Sig> op_handle(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

inline const c10::TypedOperatorHandle<ScanSig>& scan_op() {
  static const auto h = op_handle<ScanSig>("seqpar::scan");
  return h;
}
inline const c10::TypedOperatorHandle<ScanCheckpointedSig>& scan_checkpointed_op() {
  static const auto h = op_handle<ScanCheckpointedSig>("seqpar::scan_checkpointed");
  return h;
}
inline const c10::TypedOperatorHandle<ScanBackwardSig>& scan_backward_op() {
  static const auto h = op_handle<ScanBackwardSig>("seqpar::scan_backward");
  return h;
}
inline const c10::TypedOperatorHandle<ScanSummarySig>& scan_summary_op() {
  static const auto h = op_handle<ScanSummarySig>("seqpar::scan_summary");
  return h;
}

inline const c10::TypedOperatorHandle<BlockScanSig>& block_scan_op() {
  static const auto h = op_handle<BlockScanSig>("seqpar::block_scan");
  return h;
}
inline const c10::TypedOperatorHandle<BlockScanBackwardSig>& block_scan_backward_op() {
  static const auto h = op_handle<BlockScanBackwardSig>("seqpar::block_scan_backward");
  return h;
}
inline const c10::TypedOperatorHandle<BlockScanSummarySig>& block_scan_summary_op() {
  static const auto h = op_handle<BlockScanSummarySig>("seqpar::block_scan_summary");
  return h;
}

}  // namespace seqpar::ops
