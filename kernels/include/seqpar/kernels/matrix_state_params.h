// Plain parameter structs for the fused chunk kernels of the matrix-state recurrences (gated
// DeltaNet, KDA and GLA; docs/matrix_state.md): pointers, sizes and strides in elements, no tensors.
//
// Layouts are flash-linear-attention's: q, k (batch, time, heads, K); v, o (batch, time, heads,
// V); the gates (batch, time, heads) or (batch, time, heads, K); states (batch, heads, K, V).
// Every per-step operand has its own strides, so any view works.
//
// The kernels run each (batch, head) pair, or each range of its chunks, through its chunks in
// order, keeping a chunk's products in cache, and save nothing but the state entering each chunk
// (batch, heads, chunks, K, V) in the compute type; backward recomputes everything else from
// them. The small products go through a caller-supplied GEMM (the LibTorch side passes the BLAS
// of the PyTorch wheel, which picks its own instruction set at run time; tests pass a plain
// loop), so this layer stays free of torch headers.
#pragma once

#include <cstdint>

#include "seqpar/kernels/scan_params.h"

// chunk_room() is also read by the CUDA chunk kernels.
#if defined(__CUDACC__)
#define SEQPAR_MATRIX_PARAMS_HD __host__ __device__
#else
#define SEQPAR_MATRIX_PARAMS_HD
#endif

namespace seqpar::kernels {

// Row-major C = alpha * op(A) op(B) + beta * C, op(X) = X or X^T; A is m x k after op, B k x n.
template <class T>
using GemmFn = void (*)(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha,
                        const T* a, int64_t lda, const T* b, int64_t ldb, T beta, T* c,
                        int64_t ldc);

struct MatrixGemm {
  GemmFn<float> f32 = nullptr;   // for float32, bfloat16 and float16 inputs
  GemmFn<double> f64 = nullptr;  // for float64 inputs
};

// A per-step operand (batch, time, heads[, channel]) in elements; channel is 0 for gates with
// one value per head.
struct StepOperand {
  const void* data = nullptr;
  int64_t batch = 0, time = 0, head = 0, channel = 0;
};
struct MutableStepOperand {
  void* data = nullptr;
  int64_t batch = 0, time = 0, head = 0, channel = 0;
};
// A (batch, heads, K, V) state, contiguous in its last two dims; data == nullptr: absent (zeros).
struct StateOperand {
  const void* data = nullptr;
  int64_t batch = 0, head = 0;
};
struct MutableStateOperand {
  void* data = nullptr;
  int64_t batch = 0, head = 0;
};

// Which recurrence a chunk kernel runs:
//   kGatedDelta  S_t = exp(g_t) (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T, g per head
//   kGla         S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T, g per key channel
//   kKda         S_t = (I - beta_t k_t k_t^T) diag(exp(g_t)) S_{t-1} + beta_t k_t v_t^T, g per
//                key channel (Kimi Delta Attention)
// and in all o_t = scale * S_t^T q_t.
enum class MatrixRecurrence : int { kGatedDelta, kGla, kKda };

struct MatrixChunkShape {
  int64_t batch = 0, time = 0, heads = 0, key = 0, value = 0;
  int64_t chunk = 64;  // steps per chunk; the last chunk (of each segment) may be shorter
  // Packed sequences (as ScanSegments in scan_params.h): segment_bounds holds segments + 1
  // non-decreasing steps, the first 0 and the last `time`. Segment i covers steps
  // [bounds[i], bounds[i+1]) (possibly none), is cut into chunks from its own start (so no
  // chunk crosses a segment start), starts from row i of initial_state (zeros when absent) and
  // ends in row i of final_state. With segments batch must be 1, and the batch stride of every
  // state operand (initial_state, final_state, grad_final_state, grad_initial_state) indexes
  // the segment. nullptr: every batch row is one segment.
  const int64_t* segment_bounds = nullptr;
  int64_t segments = 0;
  // CUDA kernels only: segment_bounds is a host array there, and the kernels read the chunks of
  // the segments from this table in device memory instead (matrix_chunk_table_size /
  // fill_matrix_chunk_table in cuda_matrix_state.h build it on the host). The CPU kernels
  // ignore it.
  const int64_t* chunk_table = nullptr;
  // Chunks of one (batch, head) pair's run, over all its segments.
  int64_t chunks() const {
    if (chunk <= 0) return 0;
    if (segment_bounds == nullptr) return (time + chunk - 1) / chunk;
    int64_t n = 0;
    for (int64_t i = 0; i < segments; ++i)
      n += (segment_bounds[i + 1] - segment_bounds[i] + chunk - 1) / chunk;
    return n;
  }
  // Room for one (batch, head) pair's saved chunk states (the chunks axis of chunk_states):
  // chunks() without segments; with them ceil(time / chunk) + segments - 1, which bounds the
  // chunks of every segmentation of `time` steps and is known before the bounds' values (as
  // shapes must be for fake tensors). The kernels fill chunks() of it and zero the rest.
  SEQPAR_MATRIX_PARAMS_HD int64_t chunk_room() const {
    if (chunk <= 0) return 0;
    const int64_t dense = (time + chunk - 1) / chunk;
    return segment_bounds == nullptr ? dense : dense + (segments > 0 ? segments - 1 : 0);
  }
};

// Forward. q, k, v, g (and beta for kGatedDelta and kKda) share `dtype`; o has it too. States
// (initial_state, final_state, chunk_states) are in the compute type: float64 for float64
// inputs, float32 otherwise. chunk_states (batch, heads, chunks, K, V), optional: the state
// entering each chunk, which backward needs.
struct MatrixChunkForwardParams {
  MatrixRecurrence recurrence = MatrixRecurrence::kGatedDelta;
  ScalarKind dtype = ScalarKind::kFloat32;
  MatrixChunkShape shape;
  double scale = 1.0;
  StepOperand q, k, v, g, beta;
  StateOperand initial_state;       // optional
  MutableStepOperand o;             // optional (a summary-only run writes none)
  MutableStateOperand final_state;  // optional
  void* chunk_states = nullptr;     // optional, contiguous (batch, heads, chunk_room(), K, V)
  MatrixGemm gemm;
  int num_threads = 1;
};

// Backward from the saved chunk states. grad_o and grad_final_state are optional (zeros).
// Writes grad_q, grad_k, grad_v, grad_g (and grad_beta) in the inputs' layout and dtype
// (grad_g and grad_beta in the compute type), and grad_initial_state when present.
struct MatrixChunkBackwardParams {
  MatrixRecurrence recurrence = MatrixRecurrence::kGatedDelta;
  ScalarKind dtype = ScalarKind::kFloat32;
  MatrixChunkShape shape;
  double scale = 1.0;
  StepOperand q, k, v, g, beta;
  const void* chunk_states = nullptr;  // from the forward: (batch, heads, chunk_room(), K, V)
  StepOperand grad_o;                  // optional
  StateOperand grad_final_state;       // optional
  MutableStepOperand grad_q, grad_k, grad_v, grad_g, grad_beta;
  MutableStateOperand grad_initial_state;  // optional
  MatrixGemm gemm;
  int num_threads = 1;
};

}  // namespace seqpar::kernels
