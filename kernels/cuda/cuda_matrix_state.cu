// Entry points of cuda_matrix_state.h: which problems the chunk kernels take, the backward's
// scratch layout, and the finalize kernels that add up the V-tiles' partial gradients of
// q, k, g, beta (chunk_kernels.h), run g's reverse running sum inside each chunk (G is the
// running sum of g, so dg_t = sum over the chunk's steps s >= t of dG_s; the zero rows that pad
// a partial last chunk are included, which is where the chunk's last-step terms live), scale
// q's gradient and convert to the inputs' dtype.
#include <cuda_runtime.h>

#include <algorithm>

#include "chunk_kernels.h"
#include "chunk_tiles.cuh"
#include "seqpar/kernels/cuda_matrix_state.h"

namespace seqpar::kernels::cuda {
namespace chunk {
namespace {

#ifdef SEQPAR_HOST_EMULATION
constexpr int64_t kMaxFinalizeGrid = 4;  // emulated CTAs are expensive; grid-stride loops
#else
constexpr int64_t kMaxFinalizeGrid = 8192;
#endif

size_t round_up(size_t n) { return (n + 255) / 256 * 256; }

// grad_q, grad_k: one thread per padded row element (b, chunk, i, h, m); rows past the
// chunk's length (chunk_span) are padding and write nothing.
template <class In>
__global__ void __launch_bounds__(kThreads)
    finalize_rows_kernel(MatrixChunkBackwardParams p, BackwardScratch ws, int nvt) {
  using T = typename ComputeOf<In>::type;
  const MatrixChunkShape s = p.shape;
  const int64_t K = s.key, N = num_chunks(s), Tpad = N * kChunk;
  const int64_t total = s.batch * Tpad * s.heads * K, stride = s.batch * s.heads * Tpad * K;
  const T scale = static_cast<T>(p.scale);
  const T* dq = static_cast<const T*>(ws.dq);
  const T* dk = static_cast<const T*>(ws.dk);
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = idx % K;
    int64_t r = idx / K;
    const int64_t h = r % s.heads;
    r /= s.heads;
    const int64_t row = r % Tpad, b = r / Tpad, n = row / kChunk, i = row % kChunk;
    const ChunkSpan sp = chunk_span(s, n);
    if (i >= sp.len) continue;
    const int64_t t = sp.t0 + i;
    const int64_t off = ((b * s.heads + h) * Tpad + row) * K + m;
    T sq = 0, sk = 0;
    for (int v = 0; v < nvt; ++v) {
      sq += dq[off + v * stride];
      sk += dk[off + v * stride];
    }
    static_cast<In*>(p.grad_q.data)[b * p.grad_q.batch + t * p.grad_q.time + h * p.grad_q.head +
                                    m * p.grad_q.channel] = from_compute<In>(scale * sq);
    static_cast<In*>(p.grad_k.data)[b * p.grad_k.batch + t * p.grad_k.time + h * p.grad_k.head +
                                    m * p.grad_k.channel] = from_compute<In>(sk);
  }
}

// grad_g (reverse running sum inside each chunk) and grad_beta: one thread per (b, h, chunk, m).
template <class In>
__global__ void __launch_bounds__(kThreads)
    finalize_gates_kernel(MatrixChunkBackwardParams p, BackwardScratch ws, int nvt, int gate_width) {
  using T = typename ComputeOf<In>::type;
  const MatrixChunkShape s = p.shape;
  const int64_t N = num_chunks(s), Tpad = N * kChunk, Kg = gate_width;
  const int64_t total = s.batch * s.heads * N * Kg, stride = s.batch * s.heads * Tpad * Kg;
  const int64_t bstride = s.batch * s.heads * Tpad;
  const T* dg = static_cast<const T*>(ws.dg);
  const T* db = static_cast<const T*>(ws.dbeta);
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = idx % Kg;
    int64_t r = idx / Kg;
    const int64_t n = r % N;
    r /= N;
    const int64_t h = r % s.heads, b = r / s.heads;
    const int64_t row0 = (b * s.heads + h) * Tpad + n * kChunk;
    const ChunkSpan sp = chunk_span(s, n);
    T acc = 0;
    for (int i = kChunk - 1; i >= 0; --i) {
      for (int v = 0; v < nvt; ++v) acc += dg[(row0 + i) * Kg + m + v * stride];
      if (i >= sp.len) continue;
      const int64_t t = sp.t0 + i;
      static_cast<In*>(p.grad_g.data)[b * p.grad_g.batch + t * p.grad_g.time + h * p.grad_g.head +
                                      m * p.grad_g.channel] = from_compute<In>(acc);
      if (db != nullptr && p.grad_beta.data != nullptr) {
        T sb = 0;
        for (int v = 0; v < nvt; ++v) sb += db[row0 + i + v * bstride];
        static_cast<In*>(p.grad_beta.data)[b * p.grad_beta.batch + t * p.grad_beta.time +
                                           h * p.grad_beta.head] = from_compute<In>(sb);
      }
    }
  }
}

int64_t finalize_grid(int64_t items) {
  const int64_t g = (items + kThreads - 1) / kThreads;
  return g < kMaxFinalizeGrid ? g : kMaxFinalizeGrid;
}

struct ScratchSizes {
  size_t dq, dk, dg, dbeta, ds, tmp;  // bytes, each rounded to 256
  size_t total() const { return dq + dk + dg + dbeta + ds + tmp; }
};
ScratchSizes scratch_sizes(const MatrixChunkBackwardParams& p) {
  const MatrixChunkShape& s = p.shape;
  const bool gla = p.recurrence == MatrixRecurrence::kGla;
  const bool kda = p.recurrence == MatrixRecurrence::kKda;
  const size_t elem = p.dtype == ScalarKind::kFloat64 ? 8 : 4;
  const int vt = value_tile(p.dtype);
  const size_t nvt = vt > 0 ? static_cast<size_t>(s.value / vt) : 0;
  const size_t rows = nvt * s.batch * s.heads * s.chunks() * kChunk;
  const size_t ctas = nvt * s.batch * s.heads;
  ScratchSizes z;
  z.dq = round_up(rows * s.key * elem);
  z.dk = z.dq;
  z.dg = round_up(rows * (gla || kda ? s.key : 1) * elem);
  z.dbeta = gla ? 0 : round_up(rows * elem);
  z.ds = round_up(ctas * 2 * s.key * vt * elem);
  z.tmp = gla || kda ? round_up(ctas * (kda ? 3 : 1) * kChunk * s.key * elem) : 0;
  return z;
}

}  // namespace

int value_tile(ScalarKind dtype) {
  return with_input_type(dtype, [](auto in) { return kValueTile<decltype(in)>; });
}

size_t backward_scratch_bytes(const MatrixChunkBackwardParams& p) { return scratch_sizes(p).total(); }

BackwardScratch backward_scratch_at(const MatrixChunkBackwardParams& p, void* base) {
  const ScratchSizes z = scratch_sizes(p);
  char* c = static_cast<char*>(base);
  BackwardScratch w;
  w.dq = c;
  w.dk = c += z.dq;
  w.dg = c += z.dk;
  c += z.dg;
  w.dbeta = z.dbeta ? c : nullptr;
  w.ds = c += z.dbeta;
  c += z.ds;
  w.tmp = z.tmp ? c : nullptr;
  return w;
}

int finalize_backward(const MatrixChunkBackwardParams& p, const BackwardScratch& w, void* stream) {
  const MatrixChunkShape& s = p.shape;
  return with_input_type(p.dtype, [&](auto in) {
    using In = decltype(in);
    const int nvt = static_cast<int>(s.value / kValueTile<In>);
    const int gate_width = p.recurrence == MatrixRecurrence::kGatedDelta ? 1 : static_cast<int>(s.key);
    int err = launch_cta_kernel(finalize_rows_kernel<In>,
                                finalize_grid(s.batch * s.chunks() * kChunk * s.heads * s.key),
                                0, stream, p, w, nvt);
    if (err != 0) return err;
    return launch_cta_kernel(finalize_gates_kernel<In>,
                             finalize_grid(s.batch * s.heads * s.chunks() * gate_width), 0, stream, p, w,
                             nvt, gate_width);
  });
}

}  // namespace chunk

namespace {

int device_smem_limit() {
  int device = 0, bytes = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return 0;
  if (cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess) return 0;
  return bytes;
}

MatrixChunkResult from_error(int err) {
  MatrixChunkResult r;
  if (err != 0) {
    r.status = MatrixChunkStatus::kCudaError;
    r.cuda_error = err;
  }
  return r;
}
MatrixChunkResult unsupported(const char* why) {
  MatrixChunkResult r;
  r.status = MatrixChunkStatus::kUnsupported;
  r.reason = why;
  return r;
}

}  // namespace

const char* matrix_chunk_unsupported(MatrixRecurrence recurrence, ScalarKind dtype,
                                     const MatrixChunkShape& shape) {
  if (shape.chunk != chunk::kChunk) return "chunk size is not 64";
  if (shape.key != 64 && shape.key != 128) return "K is not 64 or 128";
  if (shape.value != 64 && shape.value != 128) return "V is not 64 or 128";
  if (chunk::value_tile(dtype) <= 0) return "dtype is not float32, float64, bfloat16 or float16";
  if (shape.segment_bounds != nullptr && shape.batch != 1) return "packed sequences need batch 1";
  // KDA's tiles hold its per-key-channel gates (G is 64 x K instead of 64 values).
  const bool gla = recurrence == MatrixRecurrence::kGla, kda = recurrence == MatrixRecurrence::kKda;
  const int key = static_cast<int>(shape.key);
  const size_t need_fwd = gla ? chunk::gla_smem_bytes(dtype, key, false) : chunk::delta_smem_bytes(dtype, key, false, kda);
  const size_t need_bwd = gla ? chunk::gla_smem_bytes(dtype, key, true) : chunk::delta_smem_bytes(dtype, key, true, kda);
  const size_t limit = static_cast<size_t>(device_smem_limit());
  if (need_fwd > limit || need_bwd > limit) return "the kernels' shared memory exceeds the device's";
  return nullptr;
}

size_t matrix_chunk_table_size(const MatrixChunkShape& shape) {
  if (shape.segment_bounds == nullptr) return 0;
  return static_cast<size_t>(shape.segments + 1 + 2 * shape.chunks());
}

void fill_matrix_chunk_table(const MatrixChunkShape& shape, int64_t* table) {
  if (shape.segment_bounds == nullptr) return;
  const int64_t S = shape.segments, N = shape.chunks(), C = shape.chunk;
  int64_t* first = table;
  int64_t* start = table + S + 1;
  int64_t* len = start + N;
  int64_t n = 0;
  for (int64_t i = 0; i < S; ++i) {
    first[i] = n;
    for (int64_t t = shape.segment_bounds[i]; t < shape.segment_bounds[i + 1]; t += C, ++n) {
      start[n] = t;
      len[n] = std::min(C, shape.segment_bounds[i + 1] - t);
    }
  }
  first[S] = n;
}

namespace {
// Packed sequences reach the kernels only with their chunk table in device memory.
const char* missing_table(const MatrixChunkShape& shape) {
  return shape.segment_bounds != nullptr && shape.chunk_table == nullptr
             ? "packed sequences need shape.chunk_table (fill_matrix_chunk_table) in device memory"
             : nullptr;
}
}  // namespace

size_t matrix_chunk_backward_workspace_size(const MatrixChunkBackwardParams& params) {
  return chunk::backward_scratch_bytes(params);
}

MatrixChunkResult cuda_matrix_chunk_forward(const MatrixChunkForwardParams& p, void* stream) {
  if (const char* why = matrix_chunk_unsupported(p.recurrence, p.dtype, p.shape)) return unsupported(why);
  if (const char* why = missing_table(p.shape)) return unsupported(why);
  if (p.recurrence != MatrixRecurrence::kGla && p.beta.data == nullptr && p.shape.time > 0)
    return unsupported("the delta rule (gated DeltaNet, KDA) needs beta");
  return from_error(p.recurrence == MatrixRecurrence::kGla ? chunk::gla_forward(p, stream)
                                                           : chunk::delta_forward(p, stream));
}

MatrixChunkResult cuda_matrix_chunk_backward(const MatrixChunkBackwardParams& p, void* stream,
                                             void* workspace, size_t workspace_bytes) {
  if (const char* why = matrix_chunk_unsupported(p.recurrence, p.dtype, p.shape)) return unsupported(why);
  if (const char* why = missing_table(p.shape)) return unsupported(why);
  const bool gla = p.recurrence == MatrixRecurrence::kGla;
  if (!gla && p.shape.time > 0 && (p.beta.data == nullptr || p.grad_beta.data == nullptr))
    return unsupported("the delta rule (gated DeltaNet, KDA) needs beta and grad_beta");
  if (p.shape.batch * p.shape.heads == 0) return {};
  const size_t need = chunk::backward_scratch_bytes(p);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  void* base = workspace;
  const bool own = workspace == nullptr || workspace_bytes < need ||
                   reinterpret_cast<uintptr_t>(workspace) % 256 != 0;
  if (own) {
    const cudaError_t e = cudaMallocAsync(&base, need, s);
    if (e != cudaSuccess) return from_error(static_cast<int>(e));
  }
  const chunk::BackwardScratch w = chunk::backward_scratch_at(p, base);
  int err = gla ? chunk::gla_backward(p, w, stream) : chunk::delta_backward(p, w, stream);
  if (err == 0) err = chunk::finalize_backward(p, w, stream);
  if (own) {
    const cudaError_t e = cudaFreeAsync(base, s);
    if (err == 0) err = static_cast<int>(e);
  }
  return from_error(err);
}

}  // namespace seqpar::kernels::cuda
