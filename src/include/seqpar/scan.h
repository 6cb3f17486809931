// seqpar's C++ API for LibTorch programs: the diagonal linear recurrence
//
//     h_t = a_t * h_{t-1} + b_t,   t = 1..T along dim 1,   h_0 = h0 (zeros when absent)
//
// a, b: (batch, time, *channels), same shape and dtype (float32, float64, bfloat16, float16,
// complex64), any strides. h0: (batch, *channels) or empty. reverse=true runs time from the
// end: h_t = a_t * h_{t+1} + b_t. Returns (h, h_last): h shaped like a, h_last like h0 (for
// reverse, h_last is the state at the first time step). Accumulates in float64 for float32 and
// float64, complex128 for complex64, float32 for bfloat16 and float16 (kernels::accumulation_kind,
// docs/accuracy.md); outputs are in the input dtype.
//
// Differentiable in a, b and h0 through one fused backward pass. These functions call the
// registered ops (torch.ops.seqpar.*), so they dispatch to CPU or CUDA by the inputs' device.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <string>
#include <tuple>

namespace seqpar {

struct ScanOptions {
  bool reverse = false;
  // 0: save every state for backward (memory T*D). c > 0: save every c-th state and
  // recompute the others chunk by chunk in backward (memory T*D/c, same memory traffic).
  int64_t checkpoint_every = 0;
  // CUDA: bitwise-reproducible results for this call and its backward (the kernels' fixed
  // composition order; slower when few long sequences span many tiles, docs/cuda.md). Also on
  // for every call while PyTorch's at::globalContext().deterministicAlgorithms() is. On the
  // CPU it makes several threads on a time-tiled shape bitwise reproducible for a fixed thread
  // count (the default is reproducible with one thread or untiled shapes; docs/cuda.md).
  bool deterministic = false;
  // Packed sequences (docs/packed_sequences.md): int64 [N + 1], 0 first, the packed length
  // last, non-decreasing; batch 1. Each sequence runs from its row of h0 (N, *channels), or
  // zeros (with reverse, from its own end), and h_last is (N, *channels); with
  // checkpoint_every > 0 too (checkpoint chunks count steps of the pack, across sequences).
  std::optional<at::Tensor> cu_seqlens;
};

std::tuple<at::Tensor, at::Tensor> scan(const at::Tensor& a, const at::Tensor& b,
                                        const std::optional<at::Tensor>& h0 = std::nullopt,
                                        bool reverse = false);

std::tuple<at::Tensor, at::Tensor> scan(const at::Tensor& a, const at::Tensor& b,
                                        const std::optional<at::Tensor>& h0,
                                        const ScanOptions& options);

// Propagator summary (A, B) of the whole time range: h_last = A * h0 + B for any h0.
// Not differentiable; used by the sequence-parallel scan.
std::tuple<at::Tensor, at::Tensor> scan_summary(const at::Tensor& a, const at::Tensor& b,
                                                bool reverse = false);

// The CPU engine's instruction-set target chosen at run time: "scalar", "avx2" or "avx512" on
// x86-64, "neon" or "sve" on aarch64 ("native" for a SEQPAR_NATIVE_CPU=ON build). The
// environment variable SEQPAR_CPU_CAPABILITY caps it; set_cpu_capability_cap does the same from code (an unknown
// name throws std::invalid_argument listing the accepted ones).
std::string cpu_capability();
void set_cpu_capability_cap(const std::string& name);

}  // namespace seqpar
