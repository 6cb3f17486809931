// See chunk_params.h.
#include "matrix_state/chunk_params.h"

#include "matrix_state/chunking.h"
#include "ops/kernel_params.h"
#include "ops/packed_sequences.h"

namespace seqpar::matrix_state {
namespace {

kernels::MatrixRecurrence recurrence_of(c10::string_view name) {
  if (name == "gated_delta") return kernels::MatrixRecurrence::kGatedDelta;
  if (name == "kda") return kernels::MatrixRecurrence::kKda;
  TORCH_CHECK(name == "gla", "seqpar.matrix_chunk: argument 'recurrence' must be 'gated_delta', ",
              "'kda' or 'gla', got '", std::string(name), "'");
  return kernels::MatrixRecurrence::kGla;
}

kernels::StepOperand step_operand(const at::Tensor& t) {
  if (!t.defined()) return {};
  return {t.data_ptr(), t.stride(0), t.stride(1), t.stride(2), t.dim() > 3 ? t.stride(3) : 0};
}
kernels::MutableStepOperand mutable_step_operand(const at::Tensor& t) {
  return {t.data_ptr(), t.stride(0), t.stride(1), t.stride(2), t.dim() > 3 ? t.stride(3) : 0};
}
// States are contiguous (batch, heads, K, V) in the compute type.
at::Tensor state_in(const std::optional<at::Tensor>& s, at::ScalarType dt) {
  return s && s->defined() ? s->to(dt).contiguous() : at::Tensor();
}
kernels::StateOperand state_operand(const at::Tensor& s) {
  if (!s.defined()) return {};
  return {s.data_ptr(), s.stride(0), s.stride(1)};
}
kernels::MutableStateOperand mutable_state_operand(const at::Tensor& s) {
  return {s.data_ptr(), s.stride(0), s.stride(1)};
}


// The kernels' shape, with the segments of cu_seqlens (checked, on the host; on Meta only its
// size is read), and the rows of the state operands: the batch, or one per sequence.
struct Shapes {
  kernels::MatrixChunkShape shape;
  int64_t rows;
  at::Tensor cu;  // the host cu_seqlens the shape points into (kept alive), or undefined
  int64_t room() const { return shape.chunk_room(); }
};
Shapes shapes_of(const char* op, const at::Tensor& q, const at::Tensor& v, int64_t chunk_size,
                 const std::optional<at::Tensor>& cu_seqlens) {
  TORCH_CHECK(chunk_size > 0, op, ": argument 'chunk_size' must be positive, got ", chunk_size);
  Shapes s;
  s.shape = {q.size(0), q.size(1), q.size(2), q.size(3), v.size(3), chunk_size};
  s.rows = s.shape.batch;
  if (auto cu = ops::check_cu_seqlens(op, cu_seqlens, q.size(0), q.size(1))) {
    s.cu = *cu;
    s.rows = cu->size(0) - 1;
    s.shape.segments = s.rows;
    // Tracing: the room needs only the count (a non-null pointer, never read there).
    static const int64_t kUnread = 0;
    s.shape.segment_bounds = ops::holds_values(*cu) ? cu->data_ptr<int64_t>() : &kUnread;
  }
  return s;
}


// What the forward and backward params share: the recurrence, dtype, shape, scale and the
// per-step inputs.
template <class Params>
void set_step_inputs(Params& p, const char* op, c10::string_view recurrence, const at::Tensor& q,
                     const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
                     const std::optional<at::Tensor>& beta, double scale,
                     const kernels::MatrixChunkShape& m) {
  p.recurrence = recurrence_of(recurrence);
  p.dtype = ops::scalar_kind_of(op, "q", q);
  p.shape = m;
  p.scale = scale;
  p.q = step_operand(q);
  p.k = step_operand(k);
  p.v = step_operand(v);
  p.g = step_operand(g);
  TORCH_CHECK(p.recurrence == kernels::MatrixRecurrence::kGla || (beta && beta->defined()), op,
              ": argument 'beta' is required for recurrence '", std::string(recurrence), "'");
  if (beta) p.beta = step_operand(*beta);
}

}  // namespace

PreparedChunkForward prepare_chunk_forward(
    c10::string_view recurrence, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& g, const std::optional<at::Tensor>& beta, double scale,
    const std::optional<at::Tensor>& initial_state, int64_t chunk_size,
    const std::optional<at::Tensor>& cu_seqlens) {
  const Shapes s = shapes_of("seqpar.matrix_chunk_forward", q, v, chunk_size, cu_seqlens);
  const kernels::MatrixChunkShape& m = s.shape;
  const at::ScalarType dt = compute_dtype(q.scalar_type());
  const auto state_opts = q.options().dtype(dt);
  PreparedChunkForward r;
  r.cu = s.cu;
  at::Tensor& o = r.o;
  o = at::empty({m.batch, m.time, m.heads, m.value}, v.options());
  at::Tensor& final_state = r.final_state;
  final_state = at::empty({s.rows, m.heads, m.key, m.value}, state_opts);
  at::Tensor& chunk_states = r.chunk_states;
  chunk_states = at::empty({m.batch, m.heads, s.room(), m.key, m.value}, state_opts);
  r.init = state_in(initial_state, dt);
  kernels::MatrixChunkForwardParams& p = r.params;
  set_step_inputs(p, "seqpar.matrix_chunk_forward", recurrence, q, k, v, g, beta, scale, m);
  p.initial_state = state_operand(r.init);
  p.o = mutable_step_operand(o);
  p.final_state = mutable_state_operand(final_state);
  p.chunk_states = chunk_states.data_ptr();
  return r;
}

PreparedChunkBackward prepare_chunk_backward(
    c10::string_view recurrence, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& g, const std::optional<at::Tensor>& beta, double scale,
    const at::Tensor& chunk_states, const std::optional<at::Tensor>& grad_o,
    const std::optional<at::Tensor>& grad_final_state, int64_t chunk_size,
    const std::optional<at::Tensor>& cu_seqlens) {
  PreparedChunkBackward r;
  const Shapes s = shapes_of("seqpar.matrix_chunk_backward", q, v, chunk_size, cu_seqlens);
  const kernels::MatrixChunkShape& m = s.shape;
  r.cu = s.cu;
  const at::ScalarType dt = compute_dtype(q.scalar_type());
  at::Tensor& gq = r.gq;
  gq = at::empty_like(q, at::MemoryFormat::Contiguous);
  at::Tensor& gk = r.gk;
  gk = at::empty_like(k, at::MemoryFormat::Contiguous);
  at::Tensor& gv = r.gv;
  gv = at::empty_like(v, at::MemoryFormat::Contiguous);
  at::Tensor& gg = r.gg;
  gg = at::empty_like(g, at::MemoryFormat::Contiguous);
  // GLA has no beta: an empty grad_beta (a schema's Tensor return cannot be None).
  at::Tensor& gb = r.gb;
  gb = beta ? at::empty_like(*beta, at::MemoryFormat::Contiguous) : at::empty({0}, q.options());
  at::Tensor& g_init = r.g_init;
  g_init = at::empty({s.rows, m.heads, m.key, m.value}, q.options().dtype(dt));
  r.states = chunk_states.to(dt).contiguous();
  r.go = grad_o && grad_o->defined() ? grad_o->to(v.scalar_type()) : at::Tensor();
  r.gfs = state_in(grad_final_state, dt);
  kernels::MatrixChunkBackwardParams& p = r.params;
  set_step_inputs(p, "seqpar.matrix_chunk_backward", recurrence, q, k, v, g, beta, scale, m);
  p.chunk_states = r.states.data_ptr();
  p.grad_o = step_operand(r.go);
  p.grad_final_state = state_operand(r.gfs);
  p.grad_q = mutable_step_operand(gq);
  p.grad_k = mutable_step_operand(gk);
  p.grad_v = mutable_step_operand(gv);
  p.grad_g = mutable_step_operand(gg);
  if (beta) p.grad_beta = mutable_step_operand(gb);
  p.grad_initial_state = mutable_state_operand(g_init);
  return r;
}

std::vector<int64_t> chunk_final_state_shape(const at::Tensor& q, const at::Tensor& v,
                                             int64_t chunk_size,
                                             const std::optional<at::Tensor>& cu_seqlens) {
  const Shapes s = shapes_of("seqpar.matrix_chunk", q, v, chunk_size, cu_seqlens);
  return {s.rows, s.shape.heads, s.shape.key, s.shape.value};
}

std::vector<int64_t> chunk_states_shape(const at::Tensor& q, const at::Tensor& v,
                                        int64_t chunk_size,
                                        const std::optional<at::Tensor>& cu_seqlens) {
  const Shapes s = shapes_of("seqpar.matrix_chunk", q, v, chunk_size, cu_seqlens);
  return {s.shape.batch, s.shape.heads, s.room(), s.shape.key, s.shape.value};
}

}  // namespace seqpar::matrix_state
