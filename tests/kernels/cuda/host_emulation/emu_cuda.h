// Host emulation of the CUDA features that scan_kernel.cuh and scan_launch.cuh use, so that
// the kernel's logic (tiling, shuffles, block scan, look-back, chaining, walk reversal, vector
// phase) and its launch path run on a machine without a GPU. Not a simulator of timing.
//
// Each CUDA thread of a CTA is a ucontext fiber, scheduled cooperatively on one host thread:
// __syncthreads, __syncwarp and every warp collective are rendezvous points at which a fiber
// yields until all participants arrive; shuffles exchange values through a per-warp mailbox.
// All of that state, and __shared__ memory, is thread_local, so CTAs can run concurrently on
// several host threads. Two ways to run the kernel:
//   * run_block: one CTA at a time in tile order (the driver may downgrade finished tiles'
//     flags so that the look-back walks further back);
//   * launch (used by scan_launch.cuh when SEQPAR_HOST_EMULATION is defined): the real launch
//     path, its CTAs spread over several host threads with random delays before a CTA starts
//     and around publication, so look-backs and chained waits find flags empty and spin on
//     each other through real atomics with acquire/release (libcu++ atomic_ref on the host).
// cudaMallocAsync, cudaMemsetAsync, cudaFreeAsync, cudaGetLastError, cudaGetDevice and
// cudaDeviceGetAttribute are defined here (and dynamic shared memory, for the chunk kernels;
// their tensor-core fragments are in emu_wmma.h) for the launch path (no CUDA runtime is linked);
// every 128-bit load and store is checked to be 16-byte aligned (x86 would not fault).
// Compiled with g++ against the CUDA headers (for the bf16/half types and libcu++ atomics).
#pragma once
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda/atomic>
#include <ucontext.h>
#include <cstdint>
#include <cstring>
#include <vector>
#include <functional>
#include <cassert>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <random>
#include <thread>

namespace emu {
struct Fiber { ucontext_t ctx; std::vector<char> stack; bool done = false; };
inline thread_local std::vector<Fiber>* fibers;
inline thread_local ucontext_t sched;
inline thread_local int cur = 0, nthreads = 0;
inline thread_local unsigned block_x = 0, grid_x = 1;
inline thread_local std::function<void()> body;
inline void yield() { swapcontext(&(*fibers)[cur].ctx, &sched); }
struct Barrier { int count = 0; long gen = 0; };
inline thread_local Barrier block_bar, warp_bar[32];
inline void arrive(Barrier& b, int n) {
  long g = b.gen;
  if (++b.count == n) { b.count = 0; b.gen++; }
  else { while (b.gen == g) yield(); }
}
inline thread_local uint64_t xfer[32][32];
inline int lane() { return cur & 31; }
inline int warp() { return cur >> 5; }
template <class T> T exchange(T v, int src, bool valid) {
  uint64_t bits = 0; std::memcpy(&bits, &v, sizeof(T));
  xfer[warp()][lane()] = bits;
  arrive(warp_bar[warp()], 32);
  T r = v;
  if (valid) std::memcpy(&r, &xfer[warp()][src], sizeof(T));
  arrive(warp_bar[warp()], 32);
  return r;
}
inline void trampoline() { body(); (*fibers)[cur].done = true; swapcontext(&(*fibers)[cur].ctx, &sched); }
inline void run_block(int n, std::function<void()> fn) {
  static thread_local std::vector<Fiber> fs;
  // Stacks are kept from block to block (allocating and zeroing them per CTA dominated runs
  // with many small CTAs).
  fs.resize(n);
  fibers = &fs; nthreads = n; body = std::move(fn);
  block_bar = Barrier{}; for (auto& w : warp_bar) w = Barrier{};
  for (int i = 0; i < n; ++i) {
    fs[i].done = false;
    if (fs[i].stack.size() != 256 * 1024) fs[i].stack.resize(256 * 1024);
    getcontext(&fs[i].ctx);
    fs[i].ctx.uc_stack.ss_sp = fs[i].stack.data();
    fs[i].ctx.uc_stack.ss_size = fs[i].stack.size();
    fs[i].ctx.uc_link = nullptr;
    makecontext(&fs[i].ctx, trampoline, 0);
  }
  for (;;) {
    bool any = false;
    for (int i = 0; i < n; ++i) {
      if (fs[i].done) continue;
      any = true; cur = i;
      swapcontext(&sched, &fs[i].ctx);
    }
    if (!any) break;
  }
}
struct Idx { unsigned x, y, z; };
inline Idx thread_idx() { return {unsigned(cur), 0, 0}; }
inline Idx block_idx() { return {block_x, 0, 0}; }
inline Idx block_dim() { return {unsigned(nthreads), 1, 1}; }
inline Idx grid_dim() { return {grid_x, 1, 1}; }

// Concurrency controls and counters of `launch`.
inline int workers = 1;                    // host threads per launch (1: CTAs in order)
inline double delay_p = 0.0;               // probability of a random pause at a pause point
inline std::atomic<long> empty_waits{0};   // look-back / chained polls that found no flag
inline std::atomic<long> launches{0}, mallocs{0};
inline thread_local std::mt19937 rng{12345};
inline void maybe_pause() {
  if (delay_p > 0 && std::uniform_real_distribution<double>(0, 1)(rng) < delay_p) {
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 200));
  }
}

// Dynamic shared memory (extern __shared__ in CUDA): one buffer per host thread, sized by
// launch_with_smem before the CTAs of a launch run on that thread.
inline thread_local std::vector<unsigned char> dyn_smem;
inline thread_local size_t dyn_smem_bytes = 0;
inline unsigned char* dynamic_smem() {
  if (dyn_smem.size() < dyn_smem_bytes) dyn_smem.resize(dyn_smem_bytes);
  return dyn_smem.data();
}
// The device's shared memory per block with opt-in (an H100's), for cudaDeviceGetAttribute.
inline int smem_optin_bytes = 232448;

// Runs `grid` CTAs of `block` threads; CTA start order is shuffled and spread over `workers`
// host threads. The kernel takes tile indices from its atomic counter, so any order is legal.
inline void launch(unsigned grid, int block, std::function<void()> fn, size_t smem = 0) {
  ++launches;
  std::vector<unsigned> order(grid);
  for (unsigned i = 0; i < grid; ++i) order[i] = i;
  if (workers > 1) std::shuffle(order.begin(), order.end(), std::mt19937(grid * 7919u + launches));
  std::atomic<unsigned> next{0};
  auto work = [&](int w) {
    rng.seed(1000u * unsigned(w) + unsigned(launches));
    dyn_smem_bytes = smem;
    for (unsigned i; (i = next.fetch_add(1)) < grid;) {
      maybe_pause();
      block_x = order[i];
      grid_x = grid;
      run_block(block, fn);
    }
  };
  const int n = std::max(1, std::min<int>(workers, int(grid)));
  std::vector<std::thread> pool;
  for (int w = 1; w < n; ++w) pool.emplace_back(work, w);
  work(0);
  for (auto& t : pool) t.join();
}
// A launch with `smem` bytes of dynamic shared memory per CTA (scan_launch.cuh uses none).
inline void launch_with_smem(unsigned grid, int block, size_t smem, std::function<void()> fn) {
  launch(grid, block, std::move(fn), smem);
}
}  // namespace emu

#define blockIdx (emu::block_idx())
#define blockDim (emu::block_dim())
#define gridDim (emu::grid_dim())
#undef threadIdx
#define threadIdx (emu::thread_idx())
#undef __shared__
#define __shared__ static thread_local
#define SEQPAR_HOST_EMULATION 1
#define SEQPAR_ASSERT_ALIGNED16(p)                                                          \
  do {                                                                                     \
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) {                                       \
      std::fprintf(stderr, "emulator: misaligned 128-bit access at %p (%s:%d)\n",          \
                   static_cast<const void*>(p), __FILE__, __LINE__);                        \
      std::abort();                                                                        \
    }                                                                                      \
  } while (0)
#undef __global__
#define __global__
#undef __device__
#define __device__
#undef __forceinline__
#define __forceinline__ inline
#undef __launch_bounds__
#define __launch_bounds__(...)

inline void __syncthreads() { emu::arrive(emu::block_bar, emu::nthreads); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::arrive(emu::warp_bar[emu::warp()], 32); }
inline void __threadfence() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  emu::maybe_pause();  // a pause between publishing the maps and the flag
}
// Called only while polled flags are still empty.
inline void __nanosleep(unsigned) {
  ++emu::empty_waits;
  emu::yield();
  if (emu::workers > 1) std::this_thread::yield();
}
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }

// The CUDA runtime calls of the launch path (scan_launch.cuh), on host memory.
extern "C" {
inline cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t) {
  ++emu::mallocs;
  *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline cudaError_t cudaFreeAsync(void* p, cudaStream_t) { std::free(p); return cudaSuccess; }
inline cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t) { std::memset(p, v, n); return cudaSuccess; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
// 8 emulated SMs: 4 or more column groups run chained, fewer use the look-back.
// The chunk kernels ask for the shared memory per block with opt-in (an H100's 227 KiB).
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr attr, int) {
  *v = attr == cudaDevAttrMaxSharedMemoryPerBlockOptin ? emu::smem_optin_bytes : 8;
  return cudaSuccess;
}
}
inline int __ffs(unsigned x) { return __builtin_ffs(int(x)); }
template <class T> T __shfl_up_sync(unsigned, T v, int d) { int s = emu::lane() - d; return emu::exchange(v, s, s >= 0); }
template <class T> T __shfl_down_sync(unsigned, T v, int d) { int s = emu::lane() + d; return emu::exchange(v, s, s < 32); }
template <class T> T __shfl_sync(unsigned, T v, int s) { return emu::exchange(v, s, true); }
inline unsigned __ballot_sync(unsigned, int pred) {
  emu::xfer[emu::warp()][emu::lane()] = pred ? 1 : 0;
  emu::arrive(emu::warp_bar[emu::warp()], 32);
  unsigned m = 0; for (int i = 0; i < 32; ++i) if (emu::xfer[emu::warp()][i]) m |= 1u << i;
  emu::arrive(emu::warp_bar[emu::warp()], 32);
  return m;
}
inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == 0xffffffffu; }
inline float2 __ldcg(const float2* p) { return *p; }
inline float4 __ldcg(const float4* p) { return *p; }
inline void __stcg(float2* p, float2 v) { *p = v; }
inline void __stcg(float4* p, float4 v) { *p = v; }
