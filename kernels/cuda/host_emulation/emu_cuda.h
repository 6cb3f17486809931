// Host emulation of the CUDA features that scan_kernel.cuh uses, so that the kernel's logic
// (tiling, shuffles, block scan, look-back, walk reversal, vector phase) is tested on a
// machine without a GPU. Not a simulator of the memory model or of timing.
//
// One CTA runs at a time; each CUDA thread is a ucontext fiber, scheduled cooperatively.
// __syncthreads, __syncwarp and every warp collective are rendezvous points at which a fiber
// yields until all participants arrive; shuffles exchange values through a per-warp mailbox
// between two rendezvous. __shared__ becomes `static`, which is right because CTAs never
// overlap here. Because CTAs run one after another in tile order, a look-back never finds an
// empty flag; the test driver instead downgrades finished tiles' flags from "inclusive" to
// "aggregate" at random, which makes the look-back walk further back and compose aggregates.
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

namespace emu {
struct Fiber { ucontext_t ctx; std::vector<char> stack; bool done = false; };
inline std::vector<Fiber>* fibers;
inline ucontext_t sched;
inline int cur = 0, nthreads = 0;
inline std::function<void()> body;
inline void yield() { swapcontext(&(*fibers)[cur].ctx, &sched); }
struct Barrier { int count = 0; long gen = 0; };
inline Barrier block_bar, warp_bar[32];
inline void arrive(Barrier& b, int n) {
  long g = b.gen;
  if (++b.count == n) { b.count = 0; b.gen++; }
  else { while (b.gen == g) yield(); }
}
inline uint64_t xfer[32][32];
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
  static std::vector<Fiber> fs;
  fs.assign(n, Fiber{});
  fibers = &fs; nthreads = n; body = std::move(fn);
  block_bar = Barrier{}; for (auto& w : warp_bar) w = Barrier{};
  for (int i = 0; i < n; ++i) {
    fs[i].stack.resize(256 * 1024);
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
}  // namespace emu

#define blockIdx (emu::thread_idx())
#define blockDim (emu::thread_idx())
#define gridDim (emu::thread_idx())
#undef threadIdx
#define threadIdx (emu::thread_idx())
#undef __shared__
#define __shared__ static
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
inline void __threadfence() {}
inline void __nanosleep(unsigned) { emu::yield(); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { unsigned o = *p; *p += v; return o; }
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
