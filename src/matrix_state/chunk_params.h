// Filling the fused chunk kernels' params from tensors (kernels/include/seqpar/kernels/
// matrix_state_params.h), once for every backend: the CPU (fused_chunks.cpp) and CUDA
// (fused_chunks_cuda.cpp) ops allocate their outputs and fill the params here, then set their
// own fields (the CPU's BLAS and threads) and run their kernels.
#pragma once

#include <ATen/ATen.h>

#include <optional>

#include "seqpar/kernels/matrix_state_params.h"

namespace seqpar::matrix_state {

// The outputs of matrix_chunk_forward and the params that write them; the tensors the params
// point into are kept here until the kernel has run.
struct PreparedChunkForward {
  at::Tensor o, final_state, chunk_states;
  at::Tensor init, cu;
  kernels::MatrixChunkForwardParams params;
};
PreparedChunkForward prepare_chunk_forward(
    c10::string_view recurrence, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& g, const std::optional<at::Tensor>& beta, double scale,
    const std::optional<at::Tensor>& initial_state, int64_t chunk_size,
    const std::optional<at::Tensor>& cu_seqlens);

struct PreparedChunkBackward {
  at::Tensor gq, gk, gv, gg, gb, g_init;
  at::Tensor states, go, gfs, cu;
  kernels::MatrixChunkBackwardParams params;
};
PreparedChunkBackward prepare_chunk_backward(
    c10::string_view recurrence, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& g, const std::optional<at::Tensor>& beta, double scale,
    const at::Tensor& chunk_states, const std::optional<at::Tensor>& grad_o,
    const std::optional<at::Tensor>& grad_final_state, int64_t chunk_size,
    const std::optional<at::Tensor>& cu_seqlens);

// The output shapes alone (Meta): (o, final_state, chunk_states) and grad_initial_state's.
std::vector<int64_t> chunk_final_state_shape(const at::Tensor& q, const at::Tensor& v,
                                             int64_t chunk_size,
                                             const std::optional<at::Tensor>& cu_seqlens);
std::vector<int64_t> chunk_states_shape(const at::Tensor& q, const at::Tensor& v,
                                        int64_t chunk_size,
                                        const std::optional<at::Tensor>& cu_seqlens);

}  // namespace seqpar::matrix_state
