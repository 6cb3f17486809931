// See block_scan_prepare.h.
#include "ops/block_scan_prepare.h"

#include <ATen/TensorUtils.h>
#include <c10/util/Exception.h>

#include "ops/kernel_params.h"

namespace seqpar::ops {
namespace {

int64_t block_channels(const at::Tensor& seq, int inner_dims) {
  int64_t c = 1;
  for (int64_t d = 2; d < seq.dim() - inner_dims; ++d) c *= seq.size(d);
  return c;
}

// (batch, time, *channels, inner...) as (batch, time, channels, k) with the k inner elements
// packed (unit stride), a view when the strides allow it, else a copy.
at::Tensor flatten_block(const at::Tensor& seq, int inner_dims, int64_t k) {
  at::Tensor t = seq.reshape({seq.size(0), seq.size(1), block_channels(seq, inner_dims), k});
  if (t.stride(3) != 1 && t.size(3) > 1) t = t.contiguous();
  return t;
}
// (batch, *channels, 2) as (batch, channels, 2), packed pair.
at::Tensor flatten_pair_state(const at::Tensor& state) {
  int64_t c = 1;
  for (int64_t d = 1; d < state.dim() - 1; ++d) c *= state.size(d);
  at::Tensor t = state.reshape({state.size(0), c, 2});
  if (t.stride(2) != 1) t = t.contiguous();
  return t;
}
kernels::Operand2 pair_operand2(const at::Tensor& bc2) {
  return {bc2.data_ptr(), {bc2.stride(0), bc2.stride(1)}};
}
kernels::ConstOperand2 const_pair_operand2(const std::optional<at::Tensor>& bc2) {
  return const_operand2(bc2);  // (batch, channels, 2): strides 0 and 1 are the ones needed
}

kernels::ScalarKind block_kind(const char* op, const char* name, const at::Tensor& t) {
  const at::ScalarType s = t.scalar_type();
  TORCH_CHECK(s == at::kFloat || s == at::kDouble || s == at::kBFloat16 || s == at::kHalf, op,
              ": argument '", name, "' has dtype ", s,
              "; expected float32, float64, bfloat16 or float16");
  return scalar_kind_of(op, name, t);
}

}  // namespace

std::vector<int64_t> block_state_shape(const at::Tensor& seq) {
  std::vector<int64_t> s = seq.sizes().vec();
  s.erase(s.begin() + 1);
  return s;
}

void check_block_inputs(const char* op, const at::Tensor& A, const at::Tensor& b,
                        const char* b_name, const std::optional<at::Tensor>& h0) {
  TORCH_CHECK(A.dim() >= 4 && A.size(-1) == 2 && A.size(-2) == 2, op,
              ": argument 'A' must be (batch, time, *channels, 2, 2), got shape ", A.sizes());
  block_kind(op, "A", A);
  const auto seq = A.sizes().slice(0, A.dim() - 1);
  TORCH_CHECK(b.sizes() == seq, op, ": argument '", b_name, "' must be (batch, time, ",
              "*channels, 2) matching A ", A.sizes(), ", got shape ", b.sizes());
  TORCH_CHECK(b.scalar_type() == A.scalar_type(), op, ": argument '", b_name, "' has dtype ",
              b.scalar_type(), " but A has ", A.scalar_type());
  TORCH_CHECK(b.device() == A.device(), op, ": argument '", b_name, "' is on ", b.device(),
              " but A is on ", A.device());
  if (h0.has_value() && h0->defined()) {
    const std::vector<int64_t> want = block_state_shape(b);
    TORCH_CHECK(h0->sizes() == at::IntArrayRef(want), op, ": argument 'h0' must be (batch, ",
                "*channels, 2) = ", at::IntArrayRef(want), ", got shape ", h0->sizes());
    TORCH_CHECK(h0->scalar_type() == A.scalar_type(), op, ": argument 'h0' has dtype ",
                h0->scalar_type(), " but A has ", A.scalar_type());
    TORCH_CHECK(h0->device() == A.device(), op, ": argument 'h0' is on ", h0->device(),
                " but A is on ", A.device());
  }
}

at::Tensor empty_block_like(const at::Tensor& like) {
  const at::TensorOptions meta = like.options().device(at::kMeta);
  at::Tensor layout = at::empty_like(like, meta, at::MemoryFormat::Preserve);
  const std::vector<int64_t> flat{like.size(0), like.size(1), block_channels(like, 1), 2};
  const auto strides = at::detail::computeStride(layout.sizes(), layout.strides(), flat);
  if (!strides.has_value() || (*strides)[3] != 1) layout = at::empty(like.sizes(), meta);
  return empty_output(layout.sizes(), layout.strides(), like.options());
}

PreparedBlockForward prepare_block_forward(const at::Tensor& A, const at::Tensor& b,
                                           const std::optional<at::Tensor>& h0, bool reverse,
                                           bool lower_triangular) {
  PreparedBlockForward p;
  p.h = empty_block_like(b);
  p.h_last = at::empty(block_state_shape(b), b.options());
  p.A4 = flatten_block(A, 2, 4);
  p.b3 = flatten_block(b, 1, 2);
  p.h3 = p.h.reshape(p.b3.sizes());  // a view: empty_block_like made it flattenable
  p.hl2 = flatten_pair_state(p.h_last);
  if (h0.has_value() && h0->defined()) p.h0_2 = flatten_pair_state(*h0);
  auto& q = p.params;
  q.dtype = scalar_kind_of("seqpar::block_scan", "A", A);
  q.shape = {p.A4.size(0), p.A4.size(1), p.A4.size(2)};
  q.A = const_operand3(p.A4, reverse);
  q.b = const_operand3(p.b3, reverse);
  q.h = operand3(p.h3, reverse);
  q.h0 = const_pair_operand2(p.h0_2.defined() ? std::optional<at::Tensor>(p.h0_2) : std::nullopt);
  q.h_last = pair_operand2(p.hl2);
  q.lower_triangular = lower_triangular;
  return p;
}

PreparedBlockBackward prepare_block_backward(const at::Tensor& A, const at::Tensor& h,
                                             const std::optional<at::Tensor>& h0,
                                             const std::optional<at::Tensor>& grad_h,
                                             const std::optional<at::Tensor>& grad_h_last,
                                             bool reverse, bool lower_triangular) {
  PreparedBlockBackward p;
  p.grad_A = empty_output(A.sizes(), at::empty(A.sizes(), A.options().device(at::kMeta)).strides(),
                          A.options());
  p.grad_b = empty_block_like(h);
  p.grad_h0 = at::empty(block_state_shape(h), h.options());
  p.A4 = flatten_block(A, 2, 4);
  p.h3 = flatten_block(h, 1, 2);
  p.gA4 = p.grad_A.view({p.A4.size(0), p.A4.size(1), p.A4.size(2), 4});
  p.gb3 = p.grad_b.reshape(p.h3.sizes());
  p.gh0_2 = flatten_pair_state(p.grad_h0);
  if (h0.has_value() && h0->defined()) p.h0_2 = flatten_pair_state(*h0);
  if (grad_h.has_value() && grad_h->defined()) p.gh3 = flatten_block(*grad_h, 1, 2);
  if (grad_h_last.has_value() && grad_h_last->defined())
    p.ghl2 = flatten_pair_state(*grad_h_last);
  auto& q = p.params;
  q.dtype = scalar_kind_of("seqpar::block_scan_backward", "A", A);
  q.shape = {p.A4.size(0), p.A4.size(1), p.A4.size(2)};
  q.A = const_operand3(p.A4, reverse);
  q.h = const_operand3(p.h3, reverse);
  const auto opt = [](const at::Tensor& t) {
    return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
  };
  q.h0 = const_pair_operand2(opt(p.h0_2));
  if (p.gh3.defined()) q.grad_h = const_operand3(p.gh3, reverse);
  q.grad_h_last = const_pair_operand2(opt(p.ghl2));
  q.grad_A = operand3(p.gA4, reverse);
  q.grad_b = operand3(p.gb3, reverse);
  q.grad_h0 = pair_operand2(p.gh0_2);
  q.lower_triangular = lower_triangular;
  return p;
}

PreparedBlockSummary prepare_block_summary(const at::Tensor& A, const at::Tensor& b,
                                           bool reverse, bool lower_triangular) {
  PreparedBlockSummary p;
  std::vector<int64_t> mshape = block_state_shape(b);
  mshape.push_back(2);
  p.M = at::empty(mshape, A.options());
  p.E = at::empty(block_state_shape(b), b.options());
  p.A4 = flatten_block(A, 2, 4);
  p.b3 = flatten_block(b, 1, 2);
  p.M2 = p.M.view({p.A4.size(0), p.A4.size(2), 4});
  p.E2 = flatten_pair_state(p.E);
  auto& q = p.params;
  q.dtype = scalar_kind_of("seqpar::block_scan_summary", "A", A);
  q.shape = {p.A4.size(0), p.A4.size(1), p.A4.size(2)};
  q.A = const_operand3(p.A4, reverse);
  q.b = const_operand3(p.b3, reverse);
  q.M = {p.M2.data_ptr(), {p.M2.stride(0), p.M2.stride(1)}};
  q.E = pair_operand2(p.E2);
  q.lower_triangular = lower_triangular;
  return p;
}

}  // namespace seqpar::ops
