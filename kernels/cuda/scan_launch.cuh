// Host side of the CUDA scan: takes the plan (scan_plan.h: walk-order operands, layout),
// allocates the look-back scratch and launches.
//
// Scratch (flags, tile counter, aggregates, inclusive prefixes): the caller's workspace when
// it passes one of at least workspace_*() bytes (the LibTorch glue takes it from PyTorch's
// caching allocator), otherwise one cudaMallocAsync block per launch on the caller's stream,
// released with cudaFreeAsync behind the kernel. Either way the flags are zeroed with
// cudaMemsetAsync: stream-ordered, no device-wide sync, capturable in a CUDA graph. The
// scratch is about 1-3% of the bytes the scan itself moves.
//
// This header is included by exactly one translation unit per element type (scan_<dtype>.cu)
// so that the kernel instantiations of one dtype compile in parallel with the others.
#pragma once

#include <algorithm>
#include <limits>
#include <type_traits>

#include "scan_kernel.cuh"
#include "scan_plan.h"
#include "seqpar/kernels/scan_params.h"

namespace seqpar::kernels::cuda::detail {

// Byte layout of the look-back scratch of `tiles` tiles: flags and the tile counter, then the
// aggregate maps, then the inclusive maps.
template <class S, int kCols>
struct ScratchLayout {
  using M = Map<typename Traits<S>::Acc>;
  explicit ScratchLayout(int64_t tiles)
      : flag_bytes((size_t(tiles) + 1) * sizeof(int)),
        map_offset((flag_bytes + 255) / 256 * 256),
        map_bytes(size_t(tiles) * kCols * sizeof(M)),
        total(map_offset + 2 * map_bytes) {}
  size_t flag_bytes, map_offset, map_bytes, total;
};

// Zeroes the flags of the scratch (the caller's workspace when it is large enough and 16-byte
// aligned, else a cudaMallocAsync block released behind the kernel), launches, checks.
// Multiprocessors of the current device, cached per device (at most 64 devices).
inline int multiprocessors() {
  static int cached[64] = {};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return 1;
  if (cached[dev] == 0) {
    int n = 0;
    cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
    cached[dev] = n > 0 ? n : 1;
  }
  return cached[dev];
}

template <class S, OpKind kOp, int kCols, bool kVec>
int launch_tiles(KernelArgs args, cudaStream_t stream, Workspace workspace) {
  constexpr int K = items_per_thread<S, kOp, kCols>();
  constexpr int kThreads = threads_for<kOp>();
  const int64_t tiles = plan_tiles<S, kCols, kOp>(args);
  // With a column group per two SMs or more, each chain has about one or two tiles in flight:
  // the decoupled look-back has little to overlap, and waiting for the predecessor's
  // inclusive prefix was as fast or faster on an H100 at 128 and more groups (docs/cuda.md,
  // "Tuning"), and deterministic.
  if (SEQPAR_CUDA_AUTO_CHAIN && many_groups(args.batch * args.channel_blocks, multiprocessors())) {
    args.chained = 1;
  }
  if (tiles >= int64_t(std::numeric_limits<int>::max())) return int(cudaErrorInvalidConfiguration);
  const ScratchLayout<S, kCols> layout(tiles);
  void* scratch = workspace.ptr;
  const bool own = scratch == nullptr || workspace.bytes < layout.total ||
                   reinterpret_cast<uintptr_t>(scratch) % 16 != 0;
  cudaError_t err = cudaSuccess;
  if (own) {
    err = cudaMallocAsync(&scratch, layout.total, stream);
    if (err != cudaSuccess) return int(err);
  }
  err = cudaMemsetAsync(scratch, 0, layout.flag_bytes, stream);
  if (err == cudaSuccess) {
    char* base = static_cast<char*>(scratch);
    args.flags = reinterpret_cast<int*>(base);
    args.tile_counter = reinterpret_cast<unsigned int*>(base + size_t(tiles) * sizeof(int));
    args.aggregates = base + layout.map_offset;
    args.inclusives = base + layout.map_offset + layout.map_bytes;
#ifdef SEQPAR_HOST_EMULATION  // tests/kernels/cuda/host_emulation runs this launch path on the CPU
    emu::launch(unsigned(tiles), kThreads,
                [args] { scan_tile_kernel<S, kOp, kCols, kVec, K, kThreads>(args); });
#else
    scan_tile_kernel<S, kOp, kCols, kVec, K, kThreads>
        <<<unsigned(tiles), kThreads, 0, stream>>>(args);
#endif
    err = cudaGetLastError();
  }
  const cudaError_t free_err = own ? cudaFreeAsync(scratch, stream) : cudaSuccess;
  return int(err != cudaSuccess ? err : free_err);
}

// The plan's layout fitted to the current device (fit_to_device): launches and workspace
// sizes both go through here, so that they agree.
inline Layout device_layout(const Plan& plan) {
  return fit_to_device(plan.layout, plan.args.batch, plan.args.channels, multiprocessors());
}

// The layout switch, once: fn(kCols, kVec) with the layout's channels per CTA and whether time
// runs in 128-bit vectors, as compile-time constants; `unknown` for a value outside the enum.
template <class Fn, class Unknown>
decltype(auto) layout_switch(Layout layout, Fn&& fn, Unknown&& unknown) {
  switch (layout) {
    case Layout::kChannels32: return fn(std::integral_constant<int, 32>{}, std::false_type{});
    case Layout::kChannels8: return fn(std::integral_constant<int, 8>{}, std::false_type{});
    case Layout::kTimeVector: return fn(std::integral_constant<int, 1>{}, std::true_type{});
    case Layout::kTimeScalar: return fn(std::integral_constant<int, 1>{}, std::false_type{});
  }
  return unknown();
}

template <class S, OpKind kOp>
int launch_layout(const Plan& plan, cudaStream_t stream, Workspace ws) {
  return layout_switch(
      device_layout(plan),
      [&](auto cols, auto vec) {
        return launch_tiles<S, kOp, decltype(cols)::value, decltype(vec)::value>(plan.args,
                                                                                 stream, ws);
      },
      [] { return int(cudaErrorInvalidValue); });
}

// Scratch bytes a plan needs (the same numbers launch_tiles uses).
template <class S, OpKind kOp>
size_t scratch_bytes(const Plan& plan) {
  return layout_switch(
      device_layout(plan),
      [&](auto cols, auto) {
        constexpr int kCols = decltype(cols)::value;
        KernelArgs args = plan.args;
        return static_cast<size_t>(ScratchLayout<S, kCols>(plan_tiles<S, kCols, kOp>(args)).total);
      },
      [] { return size_t{0}; });
}

inline bool launches_tiles(const ScanShape& n) { return n.batch > 0 && n.channels > 0 && n.time > 0; }

template <class S>
size_t workspace_forward(const ScanForwardParams& p) {
  return launches_tiles(p.shape) ? scratch_bytes<S, OpKind::kForward>(plan_forward<S>(p)) : 0;
}
template <class S>
size_t workspace_backward(const ScanBackwardParams& p) {
  return launches_tiles(p.shape) ? scratch_bytes<S, OpKind::kBackward>(plan_backward<S>(p)) : 0;
}
template <class S>
size_t workspace_summary(const ScanSummaryParams& p) {
  return launches_tiles(p.shape) ? scratch_bytes<S, OpKind::kSummary>(plan_summary<S>(p)) : 0;
}

template <class S>
int launch_copy_state(StateOut out, StateIn in, int64_t batch, int64_t channels,
                      typename Traits<S>::Acc fallback, cudaStream_t stream) {
  if (out.p == nullptr || batch * channels == 0) return 0;
  const int64_t n = batch * channels;
  const unsigned blocks = unsigned(std::min<int64_t>((n + 255) / 256, 4096));
#ifdef SEQPAR_HOST_EMULATION
  emu::launch(blocks, 256, [=] { copy_state_kernel<S>(out, in, batch, channels, fallback); });
#else
  copy_state_kernel<S><<<blocks, 256, 0, stream>>>(out, in, batch, channels, fallback);
#endif
  return int(cudaGetLastError());
}

// Packed sequences: the final state of every empty segment is its initial one (the kernel
// writes the others). No-op without segments.
template <class S>
int launch_empty_segments(StateOut out, StateIn in, const ScanSegments& seg, int64_t channels,
                          cudaStream_t stream) {
  using Acc = typename Traits<S>::Acc;
  if (out.p == nullptr || seg.bounds == nullptr || seg.count * channels == 0) return 0;
  const int64_t n = seg.count * channels;
  const unsigned blocks = unsigned(std::min<int64_t>((n + 255) / 256, 4096));
  const int64_t* bounds = seg.bounds;
  const int64_t count = seg.count;
  const Acc zero = acc_constant<Acc>(0.f);
#ifdef SEQPAR_HOST_EMULATION
  emu::launch(blocks, 256,
              [=] { empty_segments_kernel<S>(out, in, bounds, count, channels, zero); });
#else
  empty_segments_kernel<S><<<blocks, 256, 0, stream>>>(out, in, bounds, count, channels, zero);
#endif
  return int(cudaGetLastError());
}

// The three entry points share their shape (nothing for no batch or channels, a state copy for
// an empty time range, else plan + launch_layout) but not what an empty range writes (h0 to
// h_last, grad_h_last to grad_h0, the identity summary), which is why each is written out.
template <class S>
int launch_forward(const ScanForwardParams& p, cudaStream_t stream, Workspace ws) {
  using Acc = typename Traits<S>::Acc;
  const ScanShape& n = p.shape;
  if (n.batch == 0 || n.channels == 0) return 0;
  if (p.segments.bounds != nullptr) {
    const int err =
        launch_empty_segments<S>(state_out(p.h_last), state_in(p.h0), p.segments, n.channels, stream);
    if (err != 0 || n.time == 0) return err;
  } else if (n.time == 0) {
    return launch_copy_state<S>(state_out(p.h_last), state_in(p.h0), n.batch, n.channels,
                                acc_constant<Acc>(0.f), stream);
  }
  const Plan plan = plan_forward<S>(p);
  return launch_layout<S, OpKind::kForward>(plan, stream, ws);
}

template <class S>
int launch_backward(const ScanBackwardParams& p, cudaStream_t stream, Workspace ws) {
  using Acc = typename Traits<S>::Acc;
  const ScanShape& n = p.shape;
  if (n.batch == 0 || n.channels == 0) return 0;
  if (p.segments.bounds != nullptr) {
    const int err = launch_empty_segments<S>(state_out(p.grad_h0), state_in(p.grad_h_last),
                                             p.segments, n.channels, stream);
    if (err != 0 || n.time == 0) return err;
  } else if (n.time == 0) {
    return launch_copy_state<S>(state_out(p.grad_h0), state_in(p.grad_h_last), n.batch,
                                n.channels, acc_constant<Acc>(0.f), stream);
  }
  const Plan plan = plan_backward<S>(p);
  return launch_layout<S, OpKind::kBackward>(plan, stream, ws);
}

template <class S>
int launch_summary(const ScanSummaryParams& p, cudaStream_t stream, Workspace ws) {
  using Acc = typename Traits<S>::Acc;
  const ScanShape& n = p.shape;
  if (n.batch == 0 || n.channels == 0) return 0;
  if (n.time == 0) {
    // Empty range: the identity map (A, B) = (1, 0).
    const int err = launch_copy_state<S>(state_out(p.A), StateIn{}, n.batch, n.channels,
                                         acc_constant<Acc>(1.f), stream);
    if (err != 0) return err;
    return launch_copy_state<S>(state_out(p.B), StateIn{}, n.batch, n.channels,
                                acc_constant<Acc>(0.f), stream);
  }
  const Plan plan = plan_summary<S>(p);
  return launch_layout<S, OpKind::kSummary>(plan, stream, ws);
}

// One explicit instantiation set per element type, in scan_<dtype>.cu.
#define SEQPAR_INSTANTIATE_CUDA_SCAN(S)                                             \
  template int launch_forward<S>(const ScanForwardParams&, cudaStream_t, Workspace);  \
  template int launch_backward<S>(const ScanBackwardParams&, cudaStream_t, Workspace); \
  template int launch_summary<S>(const ScanSummaryParams&, cudaStream_t, Workspace);   \
  template size_t workspace_forward<S>(const ScanForwardParams&);                    \
  template size_t workspace_backward<S>(const ScanBackwardParams&);                  \
  template size_t workspace_summary<S>(const ScanSummaryParams&);

}  // namespace seqpar::kernels::cuda::detail
