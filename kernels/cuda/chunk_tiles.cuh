// What the CUDA chunk kernels of the matrix-state recurrences share (chunk_delta_rule.cu,
// chunk_gla.cu): the CTA's shared-memory carve-up (one function used by the host to size the
// launch and by the kernel to place its tiles), moving one chunk of one head between the
// users' strided layout and a row-major tile in the compute type, the CTA-level tile GEMM,
// the walk over a head's chunks (packed sequences: each cut into its own chunks, from a chunk
// table), the state rows it starts from and ends in, the saved chunk states, the backward
// CTA's scratch, and the launchers; the two kernels keep only their recurrence's math.
//
// Design (docs/cuda.md, "Chunk kernels"): one CTA of kThreads threads per (batch, head,
// V-tile) walks its chunks in order. The state's columns are independent in both recurrences,
// so splitting V gives B * H * V / VT CTAs instead of B * H; everything that does not depend on
// V (the chunk's decays, K K^T, Q K^T, the triangular system) is recomputed per V-tile. A chunk
// is always kChunk = 64 rows in shared memory: the rows past a partial last chunk are zeros
// with g = 0, which leave the state unchanged and make every product a multiple of 16 in
// every dimension.
//
// The GEMM: C = alpha op(A) op(B) + beta C on row-major tiles in the compute type (shared or
// global memory; every pointer is generic). For bfloat16 and float16 inputs it runs on tensor
// cores (nvcuda::wmma m16n16k16, float accumulation): each 16-deep slab of op(A) and op(B) is
// rounded to the input type into a staging tile, and every warp keeps up to 4 accumulator
// tiles. So products of intermediate quantities (the state, w, the masked scores) see the
// input type's rounding, as in flash-linear-attention's kernels. For float32 inputs tf32 (10-bit
// mantissa) would miss the 5e-6 the float32 tests ask for by orders of magnitude, so float32
// and float64 use an FMA GEMM (4 x 4 outputs per thread). Fragment elements are never touched:
// elementwise work happens in memory, which lets the host emulator hold whole tiles per lane.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#ifndef SEQPAR_HOST_EMULATION
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>
#define SEQPAR_DYNAMIC_SMEM(name) extern __shared__ __align__(128) unsigned char name[]
#define SEQPAR_HD __host__ __device__
#else
#define SEQPAR_DYNAMIC_SMEM(name) unsigned char* name = emu::dynamic_smem()
#define SEQPAR_HD
#endif

#include "seqpar/kernels/matrix_state_params.h"

namespace seqpar::kernels::cuda::chunk {

constexpr int kChunk = 64;    // steps per chunk (the only chunk size these kernels take)
constexpr int kThreads = 256; // threads per CTA
constexpr int kWarps = kThreads / 32;
constexpr int kMaxDim = 128;  // largest K or V

template <class In> struct ComputeOf { using type = float; };
template <> struct ComputeOf<double> { using type = double; };
template <class In>
constexpr bool kTensorCores = std::is_same_v<In, __nv_bfloat16> || std::is_same_v<In, __half>;
// Columns of the state per CTA: 64, or 16 in float64 so that its tiles fit shared memory
// (K = 64 only; float64 with K = 128 is refused by the shared-memory check).
template <class In> constexpr int kValueTile = std::is_same_v<In, double> ? 16 : 64;

__device__ __forceinline__ float to_compute(float x) { return x; }
__device__ __forceinline__ double to_compute(double x) { return x; }
__device__ __forceinline__ float to_compute(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_compute(__half x) { return __half2float(x); }
template <class Out> __device__ __forceinline__ Out from_compute(float x);
template <> __device__ __forceinline__ float from_compute<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_compute<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
template <> __device__ __forceinline__ __half from_compute<__half>(float x) { return __float2half(x); }
template <class Out> __device__ __forceinline__ Out from_compute(double x) { return x; }

__device__ __forceinline__ float exp_of(float x) { return expf(x); }
__device__ __forceinline__ double exp_of(double x) { return exp(x); }

// Bump allocator over shared memory (base 0 on the host: only the size is used).
struct Carve {
  uintptr_t base = 0;
  size_t off = 0;
  template <class T>
  SEQPAR_HD T* take(size_t n) {
    off = (off + 127) / 128 * 128;
    T* p = reinterpret_cast<T*>(base + off);
    off += n * sizeof(T);
    return p;
  }
};

// Staging of the tensor-core GEMM: a 16-deep slab of op(A) (up to 128 x 16) and of op(B)
// (16 x up to 128) in the input type, and one 16 x 16 float tile per warp for the epilogue.
template <class In>
struct Stage {
  In* a = nullptr;
  In* b = nullptr;
  float* c = nullptr;
  SEQPAR_HD void carve(Carve& cv) {
    if constexpr (kTensorCores<In>) {
      a = cv.take<In>(kMaxDim * 16);
      b = cv.take<In>(16 * kMaxDim);
      c = cv.take<float>(kWarps * 256);
    }
  }
};

// ---- the chunks of a (batch, head) pair's run -------------------------------------------
//
// Without packed sequences the run of batch row b is one segment, steps [0, time), cut into
// chunks of kChunk from step 0, starting from and ending in state row b. With them
// (shape.chunk_table, batch 1) segment i is cut into chunks from its own start, so no chunk
// crosses a sequence start, and starts from and ends in state row i. The table
// (fill_matrix_chunk_table, int64, in device memory) holds, for S segments and N chunks:
//   [0, S]           first chunk of each segment (entry S = N)
//   [S + 1, S + N]   first step of each chunk
//   [S + N + 1, ...] length of each chunk (1 .. kChunk)
// The kernels read chunks only through num_chunks, chunk_span and walk_chunks.

// Chunks of one (batch, head) pair's run over all its segments (shape.chunks() on the device).
__device__ __forceinline__ int64_t num_chunks(const MatrixChunkShape& s) {
  return s.chunk_table ? s.chunk_table[s.segments] : (s.time + s.chunk - 1) / s.chunk;
}

// The span of chunk n: first step and length.
struct ChunkSpan {
  int64_t t0;
  int len;
};
__device__ __forceinline__ ChunkSpan chunk_span(const MatrixChunkShape& s, int64_t n) {
  if (s.chunk_table) {
    const int64_t* starts = s.chunk_table + s.segments + 1;
    const int64_t N = s.chunk_table[s.segments];
    return {starts[n], static_cast<int>(starts[N + n])};
  }
  const int64_t t0 = n * s.chunk;
  const int64_t left = s.time - t0;
  return {t0, static_cast<int>(left < s.chunk ? left : s.chunk)};
}

// Walks batch row b's run: for each segment (from the first, or from the last with Reverse)
// enter(row), then body(n, chunk_span(n)) for its chunks n in the same direction, then
// leave(row), with `row` the segment's state row. An empty segment gets enter and leave only.
// The CTA synchronizes after enter, before leave and after leave.
template <bool Reverse, class Enter, class Body, class Leave>
__device__ void walk_chunks(const MatrixChunkShape& s, int64_t b, const Enter& enter, const Body& body,
                            const Leave& leave) {
  const int64_t segments = s.chunk_table ? s.segments : 1;
  for (int64_t k = 0; k < segments; ++k) {
    const int64_t i = Reverse ? segments - 1 - k : k;
    const int64_t first = s.chunk_table ? s.chunk_table[i] : 0;
    const int64_t end = s.chunk_table ? s.chunk_table[i + 1] : num_chunks(s);
    const int64_t row = s.chunk_table ? i : b;
    enter(row);
    __syncthreads();
    for (int64_t j = 0; j < end - first; ++j) {
      const int64_t n = Reverse ? end - 1 - j : first + j;
      body(n, chunk_span(s, n));
    }
    __syncthreads();
    leave(row);
    __syncthreads();
  }
}

// dst[i, j] = mult * x[b, t0 + i, h, col0 + j] for i < len, 0 for len <= i < kChunk
// (dst row-major, cols wide); all zeros when x is absent (data == nullptr). cols = 1 with
// col0 = 0 reads a per-head gate.
template <class In, class T, class Op>
__device__ void load_rows(const Op& x, int64_t b, int64_t h, int64_t t0, int len, int col0,
                          int cols, T mult, T* dst) {
  const In* base = x.data ? static_cast<const In*>(x.data) + b * x.batch + h * x.head : nullptr;
  if (base == nullptr) len = 0;
  for (int e = threadIdx.x; e < kChunk * cols; e += blockDim.x) {
    const int i = e / cols, j = e % cols;
    dst[e] = i < len ? mult * static_cast<T>(to_compute(base[(t0 + i) * x.time + (col0 + j) * x.channel]))
                     : T(0);
  }
}
// x[b, t0 + i, h, col0 + j] = mult * src[i * ld + j] for i < len.
template <class In, class T>
__device__ void store_rows(const MutableStepOperand& x, int64_t b, int64_t h, int64_t t0, int len,
                           int col0, int cols, T mult, const T* src, int ld) {
  In* base = static_cast<In*>(x.data) + b * x.batch + h * x.head;
  for (int e = threadIdx.x; e < len * cols; e += blockDim.x) {
    const int i = e / cols, j = e % cols;
    base[(t0 + i) * x.time + (col0 + j) * x.channel] = from_compute<In>(mult * src[i * ld + j]);
  }
}
// dst[i, j] = src[i * lds + j] for a rows x cols block (contiguous dst of width cols, or ldd).
template <class T>
__device__ void copy_block(int rows, int cols, const T* src, int lds, T* dst, int ldd) {
  for (int e = threadIdx.x; e < rows * cols; e += blockDim.x) {
    const int i = e / cols, j = e % cols;
    dst[i * ldd + j] = src[i * lds + j];
  }
}

// Sum over the CTA of one value per thread (every thread gets the total). red: kThreads of T.
template <class T>
__device__ T block_sum(T v, T* red) {
  red[threadIdx.x] = v;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s /= 2) {
    if (static_cast<int>(threadIdx.x) < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  const T total = red[0];
  __syncthreads();
  return total;
}

// ---- the CTA-level GEMM --------------------------------------------------------------------

template <bool TA, class T>
__device__ __forceinline__ T op_a(const T* A, int lda, int i, int p) {
  return TA ? A[p * lda + i] : A[i * lda + p];
}
template <bool TB, class T>
__device__ __forceinline__ T op_b(const T* B, int ldb, int p, int j) {
  return TB ? B[j * ldb + p] : B[p * ldb + j];
}

// FMA path: every thread computes 4 x 4 outputs per round. M, N multiples of 4.
template <bool TA, bool TB, class T>
__device__ void gemm_fma(int M, int N, int Kd, T alpha, const T* A, int lda, const T* B, int ldb,
                         T beta, T* C, int ldc) {
  const int tn = N / 4, tiles = (M / 4) * tn;
  for (int t = threadIdx.x; t < tiles; t += blockDim.x) {
    const int i0 = (t / tn) * 4, j0 = (t % tn) * 4;
    T acc[4][4];
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int s = 0; s < 4; ++s) acc[r][s] = T(0);
    for (int p = 0; p < Kd; ++p) {
      T a[4], b[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) a[r] = op_a<TA>(A, lda, i0 + r, p);
#pragma unroll
      for (int s = 0; s < 4; ++s) b[s] = op_b<TB>(B, ldb, p, j0 + s);
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int s = 0; s < 4; ++s) acc[r][s] += a[r] * b[s];
    }
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int s = 0; s < 4; ++s) {
        T& c = C[(i0 + r) * ldc + j0 + s];
        c = beta == T(0) ? alpha * acc[r][s] : alpha * acc[r][s] + beta * c;
      }
  }
}

// Tensor-core path (In = bfloat16 or float16): M, N, Kd multiples of 16, M x N at most 32
// tiles of 16 x 16 (4 per warp). Synchronizes the CTA internally (staging).
template <bool TA, bool TB, class In>
__device__ void gemm_tc(const Stage<In>& st, int M, int N, int Kd, float alpha, const float* A,
                        int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  using namespace nvcuda;
  constexpr int kPerWarp = 4;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int tn = N / 16, tiles = (M / 16) * tn;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kPerWarp];
#pragma unroll
  for (int r = 0; r < kPerWarp; ++r) wmma::fill_fragment(acc[r], 0.0f);
  for (int p0 = 0; p0 < Kd; p0 += 16) {
    __syncthreads();  // the previous slab has been read
    for (int e = threadIdx.x; e < M * 16; e += blockDim.x)
      st.a[e] = from_compute<In>(op_a<TA>(A, lda, e / 16, p0 + e % 16));
    for (int e = threadIdx.x; e < 16 * N; e += blockDim.x)
      st.b[e] = from_compute<In>(op_b<TB>(B, ldb, p0 + e / N, e % N));
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kPerWarp; ++r) {
      const int t = warp + r * kWarps;
      if (t < tiles) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, In, wmma::row_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, In, wmma::row_major> fb;
        wmma::load_matrix_sync(fa, st.a + (t / tn) * 256, 16);
        wmma::load_matrix_sync(fb, st.b + (t % tn) * 16, N);
        wmma::mma_sync(acc[r], fa, fb, acc[r]);
      }
    }
  }
  float* mine = st.c + warp * 256;
#pragma unroll
  for (int r = 0; r < kPerWarp; ++r) {
    const int t = warp + r * kWarps;
    if (t < tiles) {
      wmma::store_matrix_sync(mine, acc[r], 16, wmma::mem_row_major);
      __syncwarp();
      const int i0 = (t / tn) * 16, j0 = (t % tn) * 16;
      for (int e = lane; e < 256; e += 32) {
        float& c = C[(i0 + e / 16) * ldc + j0 + e % 16];
        c = beta == 0.0f ? alpha * mine[e] : alpha * mine[e] + beta * c;
      }
      __syncwarp();
    }
  }
}

// C (M x N) = alpha op(A) op(B) + beta C, op(A) M x Kd, op(B) Kd x N. Every thread of the CTA
// calls it; the caller synchronizes before (operands written) and after (C read).
template <class In, bool TA, bool TB, class T>
__device__ void cta_gemm(const Stage<In>& st, int M, int N, int Kd, T alpha, const T* A, int lda,
                         const T* B, int ldb, T beta, T* C, int ldc) {
  if constexpr (kTensorCores<In>) {
    gemm_tc<TA, TB, In>(st, M, N, Kd, alpha, A, lda, B, ldb, beta, C, ldc);
  } else {
    (void)st;
    gemm_fma<TA, TB, T>(M, N, Kd, alpha, A, lda, B, ldb, beta, C, ldc);
  }
}

}  // namespace seqpar::kernels::cuda::chunk

// ---- pieces both recurrences use -----------------------------------------------------------
namespace seqpar::kernels::cuda::chunk {

// (I + A) X = X in place, A strictly lower kChunk x kChunk (row-major), X kChunk x cols: every
// column is its own forward substitution, one thread per column.
template <class T>
__device__ void solve_unit_lower(const T* A, T* X, int cols) {
  for (int j = threadIdx.x; j < cols; j += blockDim.x)
    for (int i = 1; i < kChunk; ++i) {
      T acc = X[i * cols + j];
      for (int l = 0; l < i; ++l) acc -= A[i * kChunk + l] * X[l * cols + j];
      X[i * cols + j] = acc;
    }
}
// (I + A)^T X = X in place (backward substitution), same layout.
template <class T>
__device__ void solve_unit_upper_of_lower(const T* A, T* X, int cols) {
  for (int j = threadIdx.x; j < cols; j += blockDim.x)
    for (int i = kChunk - 2; i >= 0; --i) {
      T acc = X[i * cols + j];
      for (int l = i + 1; l < kChunk; ++l) acc -= A[l * kChunk + i] * X[l * cols + j];
      X[i * cols + j] = acc;
    }
}

// Row `row`, head h of a (rows, heads, K, V) state operand, or nullptr when it is absent.
template <class T, class Op>
__device__ __forceinline__ T* state_at(const Op& s, int64_t row, int64_t h) {
  if (s.data == nullptr) return nullptr;
  return static_cast<T*>(const_cast<void*>(static_cast<const void*>(s.data))) + row * s.batch + h * s.head;
}
// dst (K x VT, row-major) = columns col0 .. col0 + VT of `src` (K x V, row-major), zeros when
// src is nullptr; and the way back.
template <class T>
__device__ void load_state_cols(const T* src, int K, int V, int col0, int VT, T* dst) {
  for (int e = threadIdx.x; e < K * VT; e += blockDim.x)
    dst[e] = src ? src[(e / VT) * V + col0 + e % VT] : T(0);
}
template <class T>
__device__ void store_state_cols(const T* src, int K, int V, int col0, int VT, T* dst) {
  if (dst == nullptr) return;
  for (int e = threadIdx.x; e < K * VT; e += blockDim.x) dst[(e / VT) * V + col0 + e % VT] = src[e];
}

// The saved states entering each chunk of (batch b, head h): chunk_room() states of K x V.
template <class T>
__device__ __forceinline__ T* saved_states(const void* chunk_states, const MatrixChunkShape& s,
                                           int64_t b, int64_t h) {
  if (chunk_states == nullptr) return nullptr;
  return static_cast<T*>(const_cast<void*>(chunk_states)) +
         (b * s.heads + h) * s.chunk_room() * s.key * s.value;
}
// The forward's saved states: chunk n's entering state S (this CTA's columns), and zeros in
// the room past the run's chunks (chunk_room() > chunks() with segments).
template <class T>
__device__ void save_state(T* saved, const MatrixChunkShape& s, int64_t n, int col0, int VT, const T* S) {
  if (saved != nullptr)
    store_state_cols(S, static_cast<int>(s.key), static_cast<int>(s.value), col0, VT, saved + n * s.key * s.value);
}
template <class T>
__device__ void clear_spare_states(T* saved, const MatrixChunkShape& s, int col0, int VT) {
  if (saved == nullptr) return;
  const int K = static_cast<int>(s.key), V = static_cast<int>(s.value);
  for (int64_t n = num_chunks(s); n < s.chunk_room(); ++n)
    for (int e = threadIdx.x; e < K * VT; e += blockDim.x) saved[n * K * V + (e / VT) * V + col0 + e % VT] = T(0);
}

// Which CTA this is: (batch, head, V-tile), V-tiles fastest; col0 = vt * vtile.
struct CtaIndex {
  int64_t b, h;
  int vt, col0;
};
__device__ __forceinline__ CtaIndex cta_index(const MatrixChunkShape& s, int vtile) {
  const int nvt = static_cast<int>(s.value / vtile);
  const int64_t bh = blockIdx.x / nvt;
  const int vt = static_cast<int>(blockIdx.x % nvt);
  return {bh / s.heads, bh % s.heads, vt, vt * vtile};
}

// What a backward CTA keeps in global memory (BackwardScratch, chunk_kernels.h): the carried
// state gradient, dS of the state leaving the chunk (dSc) and of the one entering it (dSn),
// swapped after each chunk; its rows of the per-V-tile partial sums; the saved states.
template <class T>
struct BackwardCta {
  T* dSc;
  T* dSn;
  int64_t slot;   // (V-tile, batch, head) row block of the partial sums
  int64_t Tpad;   // chunks * kChunk rows per slot
  const T* states;  // saved states of (batch, head), this CTA's first column (ld V)
  // Rows of chunk n in a partial-sum buffer of `width` values per row.
  __device__ T* rows(void* base, int64_t n, int width) const {
    return static_cast<T*>(base) + (slot * Tpad + n * kChunk) * width;
  }
  __device__ void swap() {
    T* t = dSc;
    dSc = dSn;
    dSn = t;
  }
};
template <class T>
__device__ BackwardCta<T> backward_cta(const MatrixChunkBackwardParams& p, const CtaIndex& at, void* ds,
                                       int VT) {
  const MatrixChunkShape& s = p.shape;
  BackwardCta<T> c;
  c.dSc = static_cast<T*>(ds) + static_cast<int64_t>(blockIdx.x) * 2 * s.key * VT;
  c.dSn = c.dSc + s.key * VT;
  c.slot = (at.vt * s.batch + at.b) * s.heads + at.h;
  c.Tpad = num_chunks(s) * kChunk;
  c.states = saved_states<const T>(p.chunk_states, s, at.b, at.h) + at.col0;
  return c;
}

}  // namespace seqpar::kernels::cuda::chunk

// ---- host side -----------------------------------------------------------------------------
namespace seqpar::kernels::cuda::chunk {

// fn(In{}) with In the storage type of `kind`; -1 for a kind these kernels do not take.
template <class Fn>
int with_input_type(ScalarKind kind, const Fn& fn) {
  switch (kind) {
    case ScalarKind::kFloat32: return fn(float{});
    case ScalarKind::kFloat64: return fn(double{});
    case ScalarKind::kBFloat16: return fn(__nv_bfloat16{});
    case ScalarKind::kFloat16: return fn(__half{});
    default: return -1;
  }
}

// Bytes of shared memory of Tiles<In> (carved from base 0: only the size is used).
template <class In, template <class> class Tiles>
size_t tiles_bytes(int K) {
  Carve cv;
  Tiles<In> x;
  x.carve(cv, K, kValueTile<In>);
  return cv.off;
}
// The shared memory of a recurrence's forward (Fwd) or backward (Bwd) tiles; 0 for a dtype
// these kernels do not take.
template <template <class> class Fwd, template <class> class Bwd>
size_t smem_bytes_of(ScalarKind dtype, int key, bool backward) {
  const int r = with_input_type(dtype, [&](auto in) {
    using In = decltype(in);
    return static_cast<int>(backward ? tiles_bytes<In, Bwd>(key) : tiles_bytes<In, Fwd>(key));
  });
  return r < 0 ? 0 : static_cast<size_t>(r);
}

// Launches `kernel` on `grid` CTAs of kThreads with `smem` bytes of dynamic shared memory.
template <class Kernel, class... Args>
int launch_cta_kernel(Kernel kernel, int64_t grid, size_t smem, void* stream, const Args&... args) {
  if (grid <= 0) return 0;
#ifdef SEQPAR_HOST_EMULATION
  (void)stream;
  emu::launch_with_smem(static_cast<unsigned>(grid), kThreads, smem, [&] { kernel(args...); });
  return 0;
#else
  if (smem > 48 * 1024) {
    const cudaError_t e =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e != cudaSuccess) return static_cast<int>(e);
  }
  kernel<<<static_cast<unsigned>(grid), kThreads, smem, static_cast<cudaStream_t>(stream)>>>(args...);
  return static_cast<int>(cudaGetLastError());
#endif
}

// Launches kernel_of(In{}) (the kernel for p.dtype's input type) on one CTA per (batch, head,
// V-tile) with the shared memory of Tiles<In>, passing (p, extra...).
template <template <class> class Tiles, class Params, class KernelOf, class... Extra>
int launch_chunk_kernel(const Params& p, void* stream, const KernelOf& kernel_of, const Extra&... extra) {
  return with_input_type(p.dtype, [&](auto in) {
    using In = decltype(in);
    const int64_t grid = p.shape.batch * p.shape.heads * (p.shape.value / kValueTile<In>);
    return launch_cta_kernel(kernel_of(in), grid, tiles_bytes<In, Tiles>(static_cast<int>(p.shape.key)),
                             stream, p, extra...);
  });
}

}  // namespace seqpar::kernels::cuda::chunk
