// The fused chunk kernels as a differentiable function (fused_chunks.cpp), used by chunk_gla,
// chunk_gated_delta_rule and chunk_kda for the tensors those kernels run on (CPU; Meta for shape inference;
// CUDA for the shapes the CUDA kernels take, fused_chunks_cuda.cpp).
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace seqpar::matrix_state {

// Whether the fused kernels take tensors like q (CPU and Meta; CUDA runs the ATen composition).
bool use_fused_chunks(const at::Tensor& q);
// Whether the fused kernels take this problem of `recurrence` ("gated_delta", "kda" or "gla"):
// CPU and Meta always; CUDA when built with it and the CUDA chunk kernels take the shape (chunk
// 64, K and V in {64, 128}, the dtype, shared memory on q's device), packed (cu_seqlens) or not;
// otherwise the ATen composition (per sequence when packed).
bool use_fused_chunks(const char* recurrence, const at::Tensor& q, const at::Tensor& v,
                      int64_t chunk_size);
#ifdef SEQPAR_WITH_CUDA
// fused_chunks_cuda.cpp: the CUDA part of the above.
bool cuda_fused_chunks_supported(const char* recurrence, const at::Tensor& q, const at::Tensor& v,
                                 int64_t chunk_size);
#endif

// (o, final_state) of `recurrence` ("gated_delta", "kda" or "gla"; beta undefined for "gla"), with
// autograd that saves the inputs and the chunk states only. Arguments checked by the caller;
// cu_seqlens (packed sequences, batch 1): initial_state and final_state have a row per sequence.
std::tuple<at::Tensor, at::Tensor> fused_chunk_recurrence(
    const char* recurrence, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& g, const at::Tensor& beta, double scale,
    const std::optional<at::Tensor>& initial_state, int64_t chunk_size,
    const std::optional<at::Tensor>& cu_seqlens = std::nullopt);

}  // namespace seqpar::matrix_state
