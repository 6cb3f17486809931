// See kernel_params.h.
#include "ops/kernel_params.h"

#include <ATen/TensorUtils.h>
#include <c10/util/Exception.h>

#include <cstdlib>

namespace seqpar::ops {
namespace {

int64_t channel_count(const at::Tensor& seq) {
  int64_t d = 1;
  for (int64_t i = 2; i < seq.dim(); ++i) d *= seq.size(i);
  return d;
}

std::vector<int64_t> state_shape(const at::Tensor& seq) {
  std::vector<int64_t> shape{seq.size(0)};
  for (int64_t d = 2; d < seq.dim(); ++d) shape.push_back(seq.size(d));
  return shape;
}

bool can_flatten(const at::Tensor& t, at::IntArrayRef shape) {
  return at::detail::computeStride(t.sizes(), t.strides(), shape).has_value();
}

const char* byte_ptr(const void* p) { return static_cast<const char*>(p); }

// CPU outputs of this size or more start on a 2 MiB boundary. On the project's 2-core Zen 4 VM
// the backward scan read and wrote memory at half speed when its two outputs lay where
// PyTorch's allocator puts them (64 bytes into a page), and as fast as triad when they started
// on 2 MiB (docs/cpu_kernels.md, "Where the outputs lie"; not explained). Where freed blocks
// are kept for reuse (seqpar-train's keep_freed_memory) the alignment can leave gaps in the
// heap: the quickstart's peak host memory, median of five, rose 2% (same doc).
constexpr size_t kAlignedOutputBytes = size_t(8) << 20;
constexpr size_t kOutputAlignment = size_t(2) << 20;

at::Tensor empty_aligned_cpu(at::IntArrayRef sizes, at::IntArrayRef strides, size_t nbytes,
                             const at::TensorOptions& options) {
  void* data = nullptr;
  if (posix_memalign(&data, kOutputAlignment, nbytes) != 0)
    return at::empty_strided(sizes, strides, options);
  return at::from_blob(data, sizes, strides, [](void* p) { std::free(p); }, options);
}

}  // namespace

kernels::ScalarKind scalar_kind_of(const char* op, const char* name, const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return kernels::ScalarKind::kFloat32;
    case at::kDouble: return kernels::ScalarKind::kFloat64;
    case at::kBFloat16: return kernels::ScalarKind::kBFloat16;
    case at::kHalf: return kernels::ScalarKind::kFloat16;
    case at::kComplexFloat: return kernels::ScalarKind::kComplex64;
    default:
      TORCH_CHECK(false, op, ": argument '", name, "' has dtype ", t.scalar_type(),
                  "; expected float32, float64, bfloat16, float16 or complex64");
  }
}

at::ScalarType accumulation_dtype(at::ScalarType t) {
  kernels::ScalarKind kind;
  switch (t) {
    case at::kFloat: kind = kernels::ScalarKind::kFloat32; break;
    case at::kDouble: kind = kernels::ScalarKind::kFloat64; break;
    case at::kBFloat16: kind = kernels::ScalarKind::kBFloat16; break;
    case at::kHalf: kind = kernels::ScalarKind::kFloat16; break;
    case at::kComplexFloat: kind = kernels::ScalarKind::kComplex64; break;
    default: return t;
  }
  switch (kernels::accumulation_kind(kind)) {
    case kernels::AccumulationKind::kFloat32: return at::kFloat;
    case kernels::AccumulationKind::kFloat64: return at::kDouble;
    case kernels::AccumulationKind::kComplex128: return at::kComplexDouble;
  }
  return t;
}

at::Tensor empty_output(at::IntArrayRef sizes, at::IntArrayRef strides,
                        const at::TensorOptions& options) {
  const at::Tensor layout = at::empty_strided(sizes, strides, options.device(at::kMeta));
  const size_t nbytes = size_t(layout.numel()) * layout.element_size();
  if (options.device().is_cpu() && nbytes >= kAlignedOutputBytes)
    return empty_aligned_cpu(sizes, strides, nbytes, options);
  return at::empty_strided(sizes, strides, options);
}

at::Tensor empty_sequence_like(const at::Tensor& like) {
  // The layout (dense, in like's dimension order unless that cannot be flattened to
  // (batch, time, channels)), worked out on the meta device, then allocated once.
  const at::TensorOptions meta = like.options().device(at::kMeta);
  at::Tensor layout = at::empty_like(like, meta, at::MemoryFormat::Preserve);
  const std::vector<int64_t> flat{like.size(0), like.size(1), channel_count(like)};
  if (!can_flatten(layout, flat)) layout = at::empty(like.sizes(), meta);
  const size_t nbytes = size_t(layout.numel()) * layout.element_size();
  if (like.device().is_cpu() && nbytes >= kAlignedOutputBytes)
    return empty_aligned_cpu(layout.sizes(), layout.strides(), nbytes, like.options());
  return at::empty_strided(layout.sizes(), layout.strides(), like.options());
}

at::Tensor flatten_channels(const at::Tensor& seq) {
  return seq.reshape({seq.size(0), seq.size(1), channel_count(seq)});
}

at::Tensor flatten_state(const at::Tensor& state) {
  int64_t d = 1;
  for (int64_t i = 1; i < state.dim(); ++i) d *= state.size(i);
  return state.reshape({state.size(0), d});
}

kernels::ConstOperand3 const_operand3(const at::Tensor& btd, bool reverse) {
  kernels::ConstOperand3 op;
  op.stride = {btd.stride(0), btd.stride(1), btd.stride(2)};
  op.data = btd.data_ptr();
  if (reverse && btd.size(1) > 0) {
    op.data = byte_ptr(op.data) + (btd.size(1) - 1) * btd.stride(1) * btd.element_size();
    op.stride.time = -op.stride.time;
  }
  return op;
}

kernels::Operand3 operand3(const at::Tensor& btd, bool reverse) {
  const kernels::ConstOperand3 c = const_operand3(btd, reverse);
  return {const_cast<void*>(c.data), c.stride};
}

kernels::ConstOperand2 const_operand2(const std::optional<at::Tensor>& bd) {
  kernels::ConstOperand2 op;
  if (bd.has_value() && bd->defined()) {
    op.data = bd->data_ptr();
    op.stride = {bd->stride(0), bd->stride(1)};
  }
  return op;
}

kernels::Operand2 operand2(const at::Tensor& bd) {
  return {bd.data_ptr(), {bd.stride(0), bd.stride(1)}};
}

namespace {

// The state rows (sequences, channels) of a packed scan in the kernels' order: reversed (the last
// row first, a negated row stride) when the scan runs backwards in time.
template <class Operand>
Operand in_segment_order(Operand op, const at::Tensor& bd,
                         const std::optional<SegmentBounds>& segments) {
  if (segments && segments->reverse && bd.size(0) > 0 && op.data != nullptr) {
    op.data = static_cast<char*>(const_cast<void*>(static_cast<const void*>(op.data))) +
              (bd.size(0) - 1) * bd.stride(0) * bd.element_size();
    op.stride.batch = -op.stride.batch;
  }
  return op;
}

std::vector<int64_t> rows_shape(const at::Tensor& seq, const std::optional<SegmentBounds>& s) {
  std::vector<int64_t> shape = state_shape(seq);
  if (s) shape[0] = s->count;
  return shape;
}

kernels::ScanSegments kernel_segments(const std::optional<SegmentBounds>& s) {
  if (!s) return {};
  return {s->bounds.data_ptr<int64_t>(), s->count};
}

}  // namespace

std::optional<SegmentBounds> segment_bounds(const std::optional<at::Tensor>& cu_seqlens,
                                            int64_t time, bool reverse, at::Device device) {
  if (!cu_seqlens) return std::nullopt;
  SegmentBounds s;
  s.count = cu_seqlens->size(0) - 1;
  s.reverse = reverse;
  s.bounds = reverse ? (time - cu_seqlens->flip(0)).contiguous() : *cu_seqlens;
  s.bounds = s.bounds.to(device).contiguous();
  return s;
}

PreparedForward prepare_forward(const at::Tensor& a, const at::Tensor& b,
                                const std::optional<at::Tensor>& h0, bool reverse,
                                const std::optional<SegmentBounds>& segments) {
  PreparedForward p;
  p.segments = segments;
  p.h = empty_sequence_like(a);
  p.h_last = at::empty(rows_shape(a, segments), a.options());
  p.a3 = flatten_channels(a);
  p.b3 = flatten_channels(b);
  p.h3 = p.h.view({a.size(0), a.size(1), channel_count(a)});
  p.hl2 = flatten_state(p.h_last);
  const bool has_h0 = h0.has_value() && h0->defined();
  if (has_h0) p.h0_2 = flatten_state(*h0);
  auto& k = p.params;
  k.dtype = scalar_kind_of("seqpar::scan", "a", a);
  k.shape = {p.a3.size(0), p.a3.size(1), p.a3.size(2)};
  k.a = const_operand3(p.a3, reverse);
  k.b = const_operand3(p.b3, reverse);
  k.h = operand3(p.h3, reverse);
  k.h0 = has_h0 ? in_segment_order(const_operand2(p.h0_2), p.h0_2, segments)
                : kernels::ConstOperand2{};
  k.h_last = in_segment_order(operand2(p.hl2), p.hl2, segments);
  k.segments = kernel_segments(segments);
  return p;
}

PreparedBackward prepare_backward(const at::Tensor& a, const at::Tensor& h,
                                  const std::optional<at::Tensor>& h0,
                                  const std::optional<at::Tensor>& grad_h,
                                  const std::optional<at::Tensor>& grad_h_last, bool reverse,
                                  const std::optional<SegmentBounds>& segments) {
  PreparedBackward p;
  p.segments = segments;
  p.grad_a = empty_sequence_like(a);
  p.grad_b = empty_sequence_like(a);
  p.grad_h0 = at::empty(rows_shape(a, segments), a.options());
  const std::vector<int64_t> flat{a.size(0), a.size(1), channel_count(a)};
  p.a3 = flatten_channels(a);
  p.h3 = flatten_channels(h);
  p.ga3 = p.grad_a.view(flat);
  p.gb3 = p.grad_b.view(flat);
  p.gh0_2 = flatten_state(p.grad_h0);
  const bool has_h0 = h0.has_value() && h0->defined();
  const bool has_gh = grad_h.has_value() && grad_h->defined();
  const bool has_ghl = grad_h_last.has_value() && grad_h_last->defined();
  if (has_h0) p.h0_2 = flatten_state(*h0);
  if (has_gh) p.gh3 = flatten_channels(*grad_h);
  if (has_ghl) p.ghl2 = flatten_state(*grad_h_last);
  auto& k = p.params;
  k.dtype = scalar_kind_of("seqpar::scan_backward", "a", a);
  k.shape = {flat[0], flat[1], flat[2]};
  k.a = const_operand3(p.a3, reverse);
  k.h = const_operand3(p.h3, reverse);
  k.h0 = has_h0 ? in_segment_order(const_operand2(p.h0_2), p.h0_2, segments)
                : kernels::ConstOperand2{};
  k.grad_h = has_gh ? const_operand3(p.gh3, reverse) : kernels::ConstOperand3{};
  k.grad_h_last = has_ghl ? in_segment_order(const_operand2(p.ghl2), p.ghl2, segments)
                          : kernels::ConstOperand2{};
  k.grad_a = operand3(p.ga3, reverse);
  k.grad_b = operand3(p.gb3, reverse);
  k.grad_h0 = in_segment_order(operand2(p.gh0_2), p.gh0_2, segments);
  k.segments = kernel_segments(segments);
  return p;
}

PreparedSummary prepare_summary(const at::Tensor& a, const at::Tensor& b, bool reverse) {
  PreparedSummary p;
  p.A = at::empty(state_shape(a), a.options());
  p.B = at::empty(state_shape(a), a.options());
  p.a3 = flatten_channels(a);
  p.b3 = flatten_channels(b);
  p.A2 = flatten_state(p.A);
  p.B2 = flatten_state(p.B);
  auto& k = p.params;
  k.dtype = scalar_kind_of("seqpar::scan_summary", "a", a);
  k.shape = {p.a3.size(0), p.a3.size(1), p.a3.size(2)};
  k.a = const_operand3(p.a3, reverse);
  k.b = const_operand3(p.b3, reverse);
  k.A = operand2(p.A2);
  k.B = operand2(p.B2);
  return p;
}

}  // namespace seqpar::ops
