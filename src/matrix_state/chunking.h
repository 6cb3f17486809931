// What the chunked matrix-state recurrences share: argument checks that name the argument, and
// the change between the users' layout (batch, time, heads, X) and the chunked one
// (batch, heads, chunks, chunk, X) in the compute dtype.
//
// The time axis is padded at its end to whole chunks with steps that leave the state as it is
// (k = v = q = 0, g = 0, beta = 0): the padded steps change neither the outputs of the real
// steps nor the final state, and their outputs are cut off again.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <optional>
#include <tuple>
#include <vector>

namespace seqpar::matrix_state {

// Shapes of one call, read from q (B, T, H, K) and v (B, T, H, V).
struct Dims {
  int64_t B, T, H, K, V;
  int64_t C;  // chunk size
  int64_t N;  // number of chunks, ceil(T / C)
};

// float64 for float64 inputs, float32 otherwise.
at::ScalarType compute_dtype(at::ScalarType input);

// Checks q, k, v (and their agreement) and chunk_size; `op` names the function in errors.
Dims check_qkv(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
               int64_t chunk_size);
// Checks a per-step tensor shaped (B, T, H, *trailing) with q's dtype and device.
void check_per_step(const char* op, const char* name, const at::Tensor& t, const at::Tensor& q,
                    const Dims& d, std::optional<int64_t> trailing);
// Checks initial_state (B, H, K, V), or (N, H, K, V) with N sequences packed by cu_seqlens:
// floating, on q's device.
void check_state(const char* op, const at::Tensor& state, const at::Tensor& q, const Dims& d,
                 const std::optional<at::Tensor>& cu_seqlens = std::nullopt);

// (B, T, H, X) -> (B, H, N, C, X) in `dtype`, padded at the end of time with zeros.
at::Tensor to_chunks(const at::Tensor& x, const Dims& d, at::ScalarType dtype);
// (B, T, H) -> (B, H, N, C).
at::Tensor to_chunks_per_head(const at::Tensor& x, const Dims& d, at::ScalarType dtype);
// (B, H, N, C, X) -> (B, T, H, X) in `dtype`, the padding cut off.
at::Tensor from_chunks(const at::Tensor& x, const Dims& d, at::ScalarType dtype);

// The state entering the first chunk, (B, H, K, V) in `dtype`: initial_state or zeros.
at::Tensor initial_state_or_zeros(const std::optional<at::Tensor>& initial_state,
                                  const at::Tensor& q, const Dims& d, at::ScalarType dtype);

// Packed sequences on a device without fused chunk kernels (CUDA, until its kernels take
// segments): `run` once per sequence of cu_seqlens (host int64) on that sequence's slice of each
// per-step input (batch 1) and its row of initial_state; returns the outputs joined along time
// and the final states stacked (N, H, K, V). Not the fast path: one call per sequence.
using SequenceRun = std::function<std::tuple<at::Tensor, at::Tensor>(
    const std::vector<at::Tensor>& steps, const std::optional<at::Tensor>& initial_state)>;
std::tuple<at::Tensor, at::Tensor> run_per_sequence(const at::Tensor& cu_seqlens,
                                                    const std::vector<at::Tensor>& steps,
                                                    const std::optional<at::Tensor>& initial_state,
                                                    const SequenceRun& run);

}  // namespace seqpar::matrix_state
