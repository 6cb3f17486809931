// Host side of the CUDA scan: turns a params struct into walk-order operands, picks the tile
// shape for the memory layout, allocates the look-back scratch and launches.
//
// Layout choice (one place, so that every op agrees):
//   * channels > 1 and every operand has channel stride 1: channel-contiguous kernel, 32 (or 8
//     when channels < 24) channels per CTA, lanes across channels;
//   * every operand has time stride +-1: time-contiguous kernel, one sequence per CTA, threads
//     along time, 128-bit loads when every operand's chunks are 16-byte aligned
//     (see vector_ok), scalar loads otherwise;
//   * anything else: the time-contiguous kernel with scalar loads (correct for any strides).
// Scratch: one cudaMallocAsync block per launch on the caller's stream (flags, tile counter,
// aggregates, inclusive prefixes), zeroed with cudaMemsetAsync and released with
// cudaFreeAsync behind the kernel: stream-ordered, no device-wide sync, capturable in a CUDA
// graph. The scratch is about 1-3% of the bytes the scan itself moves.
//
// This header is included by exactly one translation unit per element type (scan_<dtype>.cu)
// so that the kernel instantiations of one dtype compile in parallel with the others.
#pragma once

#include <algorithm>
#include <limits>
#include <type_traits>

#include "scan_kernel.cuh"
#include "seqpar/kernels/scan_params.h"

namespace seqpar::kernels::cuda::detail {

constexpr int kNumThreads = 256;

// Items per thread: 16 for 2- and 4-byte types (one or four 128-bit loads), 8 for 8-byte
// types (double, complex64), which keeps the accumulators of backward in registers.
template <class S>
constexpr int items_per_thread() {
  return sizeof(S) >= 8 ? 8 : 16;
}

template <class S>
WalkOperand walk_in(const ConstOperand3& x, bool flip, int64_t time) {
  WalkOperand w{x.data, x.stride.batch, x.stride.channel, x.stride.time};
  if (flip && x.data != nullptr) {
    w.p = static_cast<const S*>(x.data) + (time - 1) * x.stride.time;
    w.st = -x.stride.time;
  }
  return w;
}
template <class S>
OutOperand walk_out(const Operand3& x, bool flip, int64_t time) {
  OutOperand w{x.data, x.stride.batch, x.stride.channel, x.stride.time};
  if (flip && x.data != nullptr) {
    w.p = static_cast<S*>(x.data) + (time - 1) * x.stride.time;
    w.st = -x.stride.time;
  }
  return w;
}
inline StateIn state_in(const ConstOperand2& x) { return {x.data, x.stride.batch, x.stride.channel}; }
inline StateOut state_out(const Operand2& x) { return {x.data, x.stride.batch, x.stride.channel}; }

// A host-side constant in the accumulation type (CFloat has no converting constructor).
template <class Acc>
Acc acc_constant(float v) {
  if constexpr (std::is_same_v<Acc, CFloat>) {
    return CFloat{v, 0.f};
  } else {
    return Acc(v);
  }
}

// The 3-D operands a kernel touches, for the layout decision.
struct LayoutView {
  const void* p;
  int64_t sb, sc, st;
};

enum class Layout { kChannels32, kChannels8, kTimeVector, kTimeScalar };

template <class S>
bool vector_ok(const LayoutView& v, int64_t batch, int64_t channels) {
  constexpr int64_t kV = 16 / sizeof(S);
  constexpr int64_t K = items_per_thread<S>();
  if (v.st != 1 && v.st != -1) return false;
  // The lowest address of chunk 0; chunk starts are multiples of K >= kV elements away.
  const auto anchor = reinterpret_cast<uintptr_t>(static_cast<const S*>(v.p) + (v.st > 0 ? 0 : -(K - 1)));
  if (anchor % 16 != 0) return false;
  if (batch > 1 && v.sb % kV != 0) return false;
  if (channels > 1 && v.sc % kV != 0) return false;
  return true;
}

template <class S>
Layout choose_layout(const LayoutView* views, int n, int64_t batch, int64_t channels) {
  bool channel_unit = channels > 1, time_unit = true, vec = true;
  for (int i = 0; i < n; ++i) {
    if (views[i].p == nullptr) continue;
    channel_unit = channel_unit && views[i].sc == 1;
    time_unit = time_unit && (views[i].st == 1 || views[i].st == -1);
    vec = vec && vector_ok<S>(views[i], batch, channels);
  }
  if (channel_unit) return channels >= 24 ? Layout::kChannels32 : Layout::kChannels8;
  if (time_unit && vec) return Layout::kTimeVector;
  return Layout::kTimeScalar;
}

// Allocates and zeroes the look-back scratch, launches, releases the scratch.
template <class S, OpKind kOp, int kCols, bool kVec>
int launch_tiles(KernelArgs args, cudaStream_t stream) {
  using M = Map<typename Traits<S>::Acc>;
  constexpr int K = items_per_thread<S>();
  constexpr int64_t kTileLen = int64_t(kNumThreads / kCols) * K;
  args.channel_blocks = (args.channels + kCols - 1) / kCols;
  args.time_tiles = (args.time + kTileLen - 1) / kTileLen;
  const int64_t tiles = args.batch * args.channel_blocks * args.time_tiles;
  if (tiles >= int64_t(std::numeric_limits<int>::max())) return int(cudaErrorInvalidConfiguration);

  const size_t flag_bytes = (size_t(tiles) + 1) * sizeof(int);  // + the tile counter
  const size_t map_offset = (flag_bytes + 255) / 256 * 256;
  const size_t map_bytes = size_t(tiles) * kCols * sizeof(M);
  const size_t total = map_offset + 2 * map_bytes;
  void* scratch = nullptr;
  cudaError_t err = cudaMallocAsync(&scratch, total, stream);
  if (err != cudaSuccess) return int(err);
  err = cudaMemsetAsync(scratch, 0, flag_bytes, stream);
  if (err == cudaSuccess) {
    char* base = static_cast<char*>(scratch);
    args.flags = reinterpret_cast<int*>(base);
    args.tile_counter = reinterpret_cast<unsigned int*>(base + size_t(tiles) * sizeof(int));
    args.aggregates = base + map_offset;
    args.inclusives = base + map_offset + map_bytes;
    scan_tile_kernel<S, kOp, kCols, kVec, K, kNumThreads>
        <<<unsigned(tiles), kNumThreads, 0, stream>>>(args);
    err = cudaGetLastError();
  }
  const cudaError_t free_err = cudaFreeAsync(scratch, stream);
  return int(err != cudaSuccess ? err : free_err);
}

template <class S, OpKind kOp>
int launch_layout(Layout layout, const KernelArgs& args, cudaStream_t stream) {
  switch (layout) {
    case Layout::kChannels32: return launch_tiles<S, kOp, 32, false>(args, stream);
    case Layout::kChannels8: return launch_tiles<S, kOp, 8, false>(args, stream);
    case Layout::kTimeVector: return launch_tiles<S, kOp, 1, true>(args, stream);
    case Layout::kTimeScalar: return launch_tiles<S, kOp, 1, false>(args, stream);
  }
  return int(cudaErrorInvalidValue);
}

template <class S>
int launch_copy_state(StateOut out, StateIn in, int64_t batch, int64_t channels,
                      typename Traits<S>::Acc fallback, cudaStream_t stream) {
  if (out.p == nullptr || batch * channels == 0) return 0;
  const int64_t n = batch * channels;
  const unsigned blocks = unsigned(std::min<int64_t>((n + 255) / 256, 4096));
  copy_state_kernel<S><<<blocks, 256, 0, stream>>>(out, in, batch, channels, fallback);
  return int(cudaGetLastError());
}

template <class S>
int launch_forward(const ScanForwardParams& p, cudaStream_t stream) {
  using Acc = typename Traits<S>::Acc;
  const ScanShape& n = p.shape;
  if (n.batch == 0 || n.channels == 0) return 0;
  if (n.time == 0) return launch_copy_state<S>(state_out(p.h_last), state_in(p.h0), n.batch, n.channels, acc_constant<Acc>(0.f), stream);
  KernelArgs args;
  args.batch = n.batch;
  args.time = n.time;
  args.channels = n.channels;
  args.x0 = walk_in<S>(p.a, false, n.time);
  args.x1 = walk_in<S>(p.b, false, n.time);
  args.y0 = walk_out<S>(p.h, false, n.time);
  args.s0 = state_in(p.h0);
  args.z0 = state_out(p.h_last);
  const LayoutView views[] = {{args.x0.p, args.x0.sb, args.x0.sc, args.x0.st},
                              {args.x1.p, args.x1.sb, args.x1.sc, args.x1.st},
                              {args.y0.p, args.y0.sb, args.y0.sc, args.y0.st}};
  return launch_layout<S, OpKind::kForward>(choose_layout<S>(views, 3, n.batch, n.channels), args, stream);
}

template <class S>
int launch_backward(const ScanBackwardParams& p, cudaStream_t stream) {
  using Acc = typename Traits<S>::Acc;
  const ScanShape& n = p.shape;
  if (n.batch == 0 || n.channels == 0) return 0;
  if (n.time == 0) {
    return launch_copy_state<S>(state_out(p.grad_h0), state_in(p.grad_h_last), n.batch, n.channels, acc_constant<Acc>(0.f), stream);
  }
  // The adjoint runs from the last step to the first: walk the time axis backwards.
  KernelArgs args;
  args.batch = n.batch;
  args.time = n.time;
  args.channels = n.channels;
  args.x0 = walk_in<S>(p.a, true, n.time);
  args.x1 = walk_in<S>(p.grad_h, true, n.time);
  args.x2 = walk_in<S>(p.h, true, n.time);
  args.y0 = walk_out<S>(p.grad_a, true, n.time);
  args.y1 = walk_out<S>(p.grad_b, true, n.time);
  args.s0 = state_in(p.grad_h_last);
  args.s1 = state_in(p.h0);
  args.z0 = state_out(p.grad_h0);
  const LayoutView views[] = {{args.x0.p, args.x0.sb, args.x0.sc, args.x0.st},
                              {args.x1.p, args.x1.sb, args.x1.sc, args.x1.st},
                              {args.x2.p, args.x2.sb, args.x2.sc, args.x2.st},
                              {args.y0.p, args.y0.sb, args.y0.sc, args.y0.st},
                              {args.y1.p, args.y1.sb, args.y1.sc, args.y1.st}};
  return launch_layout<S, OpKind::kBackward>(choose_layout<S>(views, 5, n.batch, n.channels), args, stream);
}

template <class S>
int launch_summary(const ScanSummaryParams& p, cudaStream_t stream) {
  using Acc = typename Traits<S>::Acc;
  const ScanShape& n = p.shape;
  if (n.batch == 0 || n.channels == 0) return 0;
  if (n.time == 0) {
    // Empty range: the identity map (A, B) = (1, 0).
    int err = launch_copy_state<S>(state_out(p.A), StateIn{}, n.batch, n.channels, acc_constant<Acc>(1.f), stream);
    if (err != 0) return err;
    return launch_copy_state<S>(state_out(p.B), StateIn{}, n.batch, n.channels, acc_constant<Acc>(0.f), stream);
  }
  KernelArgs args;
  args.batch = n.batch;
  args.time = n.time;
  args.channels = n.channels;
  args.x0 = walk_in<S>(p.a, false, n.time);
  args.x1 = walk_in<S>(p.b, false, n.time);
  args.z0 = state_out(p.A);
  args.z1 = state_out(p.B);
  const LayoutView views[] = {{args.x0.p, args.x0.sb, args.x0.sc, args.x0.st},
                              {args.x1.p, args.x1.sb, args.x1.sc, args.x1.st}};
  return launch_layout<S, OpKind::kSummary>(choose_layout<S>(views, 2, n.batch, n.channels), args, stream);
}

// One explicit instantiation set per element type, in scan_<dtype>.cu.
#define SEQPAR_INSTANTIATE_CUDA_SCAN(S)                                                        \
  template int launch_forward<S>(const ScanForwardParams&, cudaStream_t);                     \
  template int launch_backward<S>(const ScanBackwardParams&, cudaStream_t);                   \
  template int launch_summary<S>(const ScanSummaryParams&, cudaStream_t);

}  // namespace seqpar::kernels::cuda::detail
