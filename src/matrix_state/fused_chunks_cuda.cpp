// CUDA kernels of the ops matrix_chunk_forward / matrix_chunk_backward (fused_chunks.cpp has the
// CPU and Meta ones and the autograd function over both): fills the kernels' params from the
// tensors exactly as the CPU glue does, and launches kernels/cuda's chunk kernels
// (seqpar/kernels/cuda_matrix_state.h) on the current stream of q's device. Compiled only with
// SEQPAR_WITH_CUDA. use_fused_chunks routes a CUDA call here only for the shapes the kernels
// take (cuda_fused_chunks_supported); any other shape keeps the ATen composition.
//
// The backward's scratch (per V-tile partial gradients and the carried state gradient) is a
// byte tensor from PyTorch's caching allocator on the current stream, freed when the op returns.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/library.h>

#include "matrix_state/chunking.h"
#include "matrix_state/fused_chunks.h"
#include "ops/kernel_params.h"
#include "seqpar/kernels/cuda_matrix_state.h"

namespace seqpar::matrix_state {
namespace {

kernels::MatrixRecurrence recurrence_of(c10::string_view name) {
  if (name == "gated_delta") return kernels::MatrixRecurrence::kGatedDelta;
  TORCH_CHECK(name == "gla", "seqpar.matrix_chunk: argument 'recurrence' must be 'gated_delta' or ",
              "'gla', got '", std::string(name), "'");
  return kernels::MatrixRecurrence::kGla;
}

kernels::StepOperand step_operand(const at::Tensor& t) {
  if (!t.defined()) return {};
  return {t.data_ptr(), t.stride(0), t.stride(1), t.stride(2), t.dim() > 3 ? t.stride(3) : 0};
}
kernels::MutableStepOperand mutable_step_operand(const at::Tensor& t) {
  return {t.data_ptr(), t.stride(0), t.stride(1), t.stride(2), t.dim() > 3 ? t.stride(3) : 0};
}
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

void* current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

void check_result(const char* op, const kernels::cuda::MatrixChunkResult& r) {
  TORCH_CHECK(r.status != kernels::cuda::MatrixChunkStatus::kUnsupported, op,
              ": the CUDA chunk kernels do not take this problem (", r.reason,
              "); chunk_gla / chunk_gated_delta_rule use the ATen composition for it");
  TORCH_CHECK(r.ok(), op, ": CUDA kernel launch failed: ",
              cudaGetErrorString(static_cast<cudaError_t>(r.cuda_error)));
}

// Packed sequences (cu_seqlens) do not reach these kernels: use_fused_chunks sends them to the
// per-sequence composition on CUDA.
void check_not_packed(const char* op, const std::optional<at::Tensor>& cu_seqlens) {
  TORCH_CHECK(!(cu_seqlens && cu_seqlens->defined()), op,
              ": packed sequences (cu_seqlens) are not supported by the CUDA chunk kernels yet");
}

kernels::MatrixChunkShape shape_of(const at::Tensor& q, const at::Tensor& v, int64_t chunk_size) {
  TORCH_CHECK(chunk_size > 0, "seqpar.matrix_chunk: argument 'chunk_size' must be positive, got ",
              chunk_size);
  return {q.size(0), q.size(1), q.size(2), q.size(3), v.size(3), chunk_size};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cuda(
    c10::string_view recurrence, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& g, const std::optional<at::Tensor>& beta, double scale,
    const std::optional<at::Tensor>& initial_state, int64_t chunk_size,
    const std::optional<at::Tensor>& cu_seqlens) {
  const char* op = "seqpar.matrix_chunk_forward";
  check_not_packed(op, cu_seqlens);
  const c10::cuda::CUDAGuard guard(q.device());
  const kernels::MatrixChunkShape s = shape_of(q, v, chunk_size);
  const at::ScalarType dt = compute_dtype(q.scalar_type());
  const auto state_opts = q.options().dtype(dt);
  at::Tensor o = at::empty({s.batch, s.time, s.heads, s.value}, v.options());
  at::Tensor final_state = at::empty({s.batch, s.heads, s.key, s.value}, state_opts);
  at::Tensor chunk_states = at::empty({s.batch, s.heads, s.chunks(), s.key, s.value}, state_opts);
  const at::Tensor init = state_in(initial_state, dt);
  kernels::MatrixChunkForwardParams p;
  p.recurrence = recurrence_of(recurrence);
  p.dtype = ops::scalar_kind_of(op, "q", q);
  p.shape = s;
  p.scale = scale;
  p.q = step_operand(q);
  p.k = step_operand(k);
  p.v = step_operand(v);
  p.g = step_operand(g);
  if (beta) p.beta = step_operand(*beta);
  p.initial_state = state_operand(init);
  p.o = mutable_step_operand(o);
  p.final_state = mutable_state_operand(final_state);
  p.chunk_states = chunk_states.data_ptr();
  if (s.batch * s.heads > 0) check_result(op, kernels::cuda::cuda_matrix_chunk_forward(p, current_stream()));
  return {o, final_state, chunk_states};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_cuda(
    c10::string_view recurrence, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& g, const std::optional<at::Tensor>& beta, double scale,
    const at::Tensor& chunk_states, const std::optional<at::Tensor>& grad_o,
    const std::optional<at::Tensor>& grad_final_state, int64_t chunk_size,
    const std::optional<at::Tensor>& cu_seqlens) {
  const char* op = "seqpar.matrix_chunk_backward";
  check_not_packed(op, cu_seqlens);
  const c10::cuda::CUDAGuard guard(q.device());
  const kernels::MatrixChunkShape s = shape_of(q, v, chunk_size);
  const at::ScalarType dt = compute_dtype(q.scalar_type());
  at::Tensor gq = at::empty_like(q, at::MemoryFormat::Contiguous);
  at::Tensor gk = at::empty_like(k, at::MemoryFormat::Contiguous);
  at::Tensor gv = at::empty_like(v, at::MemoryFormat::Contiguous);
  at::Tensor gg = at::empty_like(g, at::MemoryFormat::Contiguous);
  at::Tensor gb = beta ? at::empty_like(*beta, at::MemoryFormat::Contiguous) : at::empty({0}, q.options());
  at::Tensor g_init = at::empty({s.batch, s.heads, s.key, s.value}, q.options().dtype(dt));
  const at::Tensor states = chunk_states.to(dt).contiguous();
  const at::Tensor go = grad_o && grad_o->defined() ? grad_o->to(v.scalar_type()) : at::Tensor();
  const at::Tensor gfs = state_in(grad_final_state, dt);
  kernels::MatrixChunkBackwardParams p;
  p.recurrence = recurrence_of(recurrence);
  p.dtype = ops::scalar_kind_of(op, "q", q);
  p.shape = s;
  p.scale = scale;
  p.q = step_operand(q);
  p.k = step_operand(k);
  p.v = step_operand(v);
  p.g = step_operand(g);
  if (beta) p.beta = step_operand(*beta);
  p.chunk_states = states.data_ptr();
  p.grad_o = step_operand(go);
  p.grad_final_state = state_operand(gfs);
  p.grad_q = mutable_step_operand(gq);
  p.grad_k = mutable_step_operand(gk);
  p.grad_v = mutable_step_operand(gv);
  p.grad_g = mutable_step_operand(gg);
  if (beta) p.grad_beta = mutable_step_operand(gb);
  p.grad_initial_state = mutable_state_operand(g_init);
  if (s.batch * s.heads > 0) {
    const size_t bytes = kernels::cuda::matrix_chunk_backward_workspace_size(p);
    const at::Tensor scratch = at::empty({static_cast<int64_t>(bytes)}, q.options().dtype(at::kByte));
    check_result(op, kernels::cuda::cuda_matrix_chunk_backward(p, current_stream(), scratch.data_ptr(), bytes));
  }
  return {gq, gk, gv, gg, gb, g_init};
}

}  // namespace

bool cuda_fused_chunks_supported(const char* recurrence, const at::Tensor& q, const at::Tensor& v,
                                 int64_t chunk_size) {
  if (!q.is_cuda() || q.dim() != 4 || v.dim() != 4) return false;
  const at::ScalarType t = q.scalar_type();
  if (t != at::kFloat && t != at::kDouble && t != at::kBFloat16 && t != at::kHalf) return false;
  const c10::cuda::CUDAGuard guard(q.device());
  const kernels::MatrixChunkShape s{q.size(0), q.size(1), q.size(2), q.size(3), v.size(3), chunk_size};
  const auto rec = std::string(recurrence) == "gla" ? kernels::MatrixRecurrence::kGla
                                                    : kernels::MatrixRecurrence::kGatedDelta;
  return kernels::cuda::matrix_chunk_unsupported(rec, ops::scalar_kind_of("seqpar.matrix_chunk", "q", q), s) ==
         nullptr;
}

}  // namespace seqpar::matrix_state

TORCH_LIBRARY_IMPL(seqpar, CUDA, m) {
  m.impl("matrix_chunk_forward", &seqpar::matrix_state::forward_cuda);
  m.impl("matrix_chunk_backward", &seqpar::matrix_state::backward_cuda);
}
