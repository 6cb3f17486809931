// CUDA kernels of the ops matrix_chunk_forward / matrix_chunk_backward (fused_chunks.cpp has the
// CPU and Meta ones and the autograd function over both): fills the kernels' params from the
// tensors exactly as the CPU glue does, and launches kernels/cuda's chunk kernels
// (seqpar/kernels/cuda_matrix_state.h) on the current stream of q's device. Compiled only with
// SEQPAR_WITH_CUDA. use_fused_chunks routes a CUDA call here only for the shapes the kernels
// take (cuda_fused_chunks_supported), packed (cu_seqlens) or not; any other shape keeps the
// ATen composition (once per sequence when packed).
//
// The backward's scratch (per V-tile partial gradients and the carried state gradient) is a
// byte tensor from PyTorch's caching allocator on the current stream, freed when the op returns.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/library.h>

#include "matrix_state/chunk_params.h"
#include "matrix_state/chunking.h"
#include "matrix_state/fused_chunks.h"
#include "ops/kernel_params.h"
#include "seqpar/kernels/cuda_matrix_state.h"

namespace seqpar::matrix_state {
namespace {

void* current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

void check_result(const char* op, const kernels::cuda::MatrixChunkResult& r) {
  TORCH_CHECK(r.status != kernels::cuda::MatrixChunkStatus::kUnsupported, op,
              ": the CUDA chunk kernels do not take this problem (", r.reason,
              "); chunk_gla / chunk_gated_delta_rule / chunk_kda use the ATen composition for it");
  TORCH_CHECK(r.ok(), op, ": CUDA kernel launch failed: ",
              cudaGetErrorString(static_cast<cudaError_t>(r.cuda_error)));
}

// Packed sequences (cu_seqlens): the chunk table of the prepared shape (whose segment_bounds
// point into the checked host copy of cu_seqlens) in device memory on q's device, pointed to
// by the shape; returned so that it lives until the op returns (after that the caching
// allocator reuses its memory only in the order of the current stream, behind the kernels).
// The host copy is pinned and copied asynchronously; PyTorch's host allocator keeps it until
// the copy is done. Undefined when not packed.
at::Tensor attach_chunk_table(kernels::MatrixChunkShape& shape, const at::Tensor& q) {
  if (shape.segment_bounds == nullptr) return {};
  at::Tensor host = at::empty({static_cast<int64_t>(kernels::cuda::matrix_chunk_table_size(shape))},
                              at::TensorOptions().dtype(at::kLong).pinned_memory(true));
  kernels::cuda::fill_matrix_chunk_table(shape, host.data_ptr<int64_t>());
  at::Tensor table = host.to(q.device(), /*non_blocking=*/true);
  shape.chunk_table = table.data_ptr<int64_t>();
  return table;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cuda(
    c10::string_view recurrence, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& g, const std::optional<at::Tensor>& beta, double scale,
    const std::optional<at::Tensor>& initial_state, int64_t chunk_size,
    const std::optional<at::Tensor>& cu_seqlens) {
  const char* op = "seqpar.matrix_chunk_forward";
  const c10::cuda::CUDAGuard guard(q.device());
  PreparedChunkForward r = prepare_chunk_forward(recurrence, q, k, v, g, beta, scale,
                                                 initial_state, chunk_size, cu_seqlens);
  const at::Tensor table = attach_chunk_table(r.params.shape, q);
  const kernels::MatrixChunkShape& s = r.params.shape;
  if (s.batch * s.heads > 0)
    check_result(op, kernels::cuda::cuda_matrix_chunk_forward(r.params, current_stream()));
  return {r.o, r.final_state, r.chunk_states};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_cuda(
    c10::string_view recurrence, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& g, const std::optional<at::Tensor>& beta, double scale,
    const at::Tensor& chunk_states, const std::optional<at::Tensor>& grad_o,
    const std::optional<at::Tensor>& grad_final_state, int64_t chunk_size,
    const std::optional<at::Tensor>& cu_seqlens) {
  const char* op = "seqpar.matrix_chunk_backward";
  const c10::cuda::CUDAGuard guard(q.device());
  PreparedChunkBackward r =
      prepare_chunk_backward(recurrence, q, k, v, g, beta, scale, chunk_states, grad_o,
                             grad_final_state, chunk_size, cu_seqlens);
  const at::Tensor table = attach_chunk_table(r.params.shape, q);
  const kernels::MatrixChunkShape& s = r.params.shape;
  if (s.batch * s.heads > 0) {
    const size_t bytes = kernels::cuda::matrix_chunk_backward_workspace_size(r.params);
    const at::Tensor scratch = at::empty({static_cast<int64_t>(bytes)}, q.options().dtype(at::kByte));
    check_result(op, kernels::cuda::cuda_matrix_chunk_backward(r.params, current_stream(),
                                                               scratch.data_ptr(), bytes));
  }
  return {r.gq, r.gk, r.gv, r.gg, r.gb, r.g_init};
}

}  // namespace

bool cuda_fused_chunks_supported(const char* recurrence, const at::Tensor& q, const at::Tensor& v,
                                 int64_t chunk_size) {
  if (!q.is_cuda() || q.dim() != 4 || v.dim() != 4) return false;
  const at::ScalarType t = q.scalar_type();
  if (t != at::kFloat && t != at::kDouble && t != at::kBFloat16 && t != at::kHalf) return false;
  const c10::cuda::CUDAGuard guard(q.device());
  const kernels::MatrixChunkShape s{q.size(0), q.size(1), q.size(2), q.size(3), v.size(3), chunk_size};
  const std::string name(recurrence);
  const auto rec = name == "gla"   ? kernels::MatrixRecurrence::kGla
                   : name == "kda" ? kernels::MatrixRecurrence::kKda
                                   : kernels::MatrixRecurrence::kGatedDelta;
  return kernels::cuda::matrix_chunk_unsupported(rec, ops::scalar_kind_of("seqpar.matrix_chunk", "q", q), s) ==
         nullptr;
}

}  // namespace seqpar::matrix_state

TORCH_LIBRARY_IMPL(seqpar, CUDA, m) {
  m.impl("matrix_chunk_forward", &seqpar::matrix_state::forward_cuda);
  m.impl("matrix_chunk_backward", &seqpar::matrix_state::backward_cuda);
}
