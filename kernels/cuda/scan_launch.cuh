// Host side of the CUDA scan: takes the plan (scan_plan.h: walk-order operands, layout),
// allocates the look-back scratch and launches.
//
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

#include "scan_kernel.cuh"
#include "scan_plan.h"
#include "seqpar/kernels/scan_params.h"

namespace seqpar::kernels::cuda::detail {

// Allocates and zeroes the look-back scratch, launches, releases the scratch.
template <class S, OpKind kOp, int kCols, bool kVec>
int launch_tiles(KernelArgs args, cudaStream_t stream) {
  using M = Map<typename Traits<S>::Acc>;
  constexpr int K = items_per_thread<S>();
  const int64_t tiles = plan_tiles<S, kCols>(args);
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
  if (n.time == 0) {
    return launch_copy_state<S>(state_out(p.h_last), state_in(p.h0), n.batch, n.channels,
                                acc_constant<Acc>(0.f), stream);
  }
  const Plan plan = plan_forward<S>(p);
  return launch_layout<S, OpKind::kForward>(plan.layout, plan.args, stream);
}

template <class S>
int launch_backward(const ScanBackwardParams& p, cudaStream_t stream) {
  using Acc = typename Traits<S>::Acc;
  const ScanShape& n = p.shape;
  if (n.batch == 0 || n.channels == 0) return 0;
  if (n.time == 0) {
    return launch_copy_state<S>(state_out(p.grad_h0), state_in(p.grad_h_last), n.batch,
                                n.channels, acc_constant<Acc>(0.f), stream);
  }
  const Plan plan = plan_backward<S>(p);
  return launch_layout<S, OpKind::kBackward>(plan.layout, plan.args, stream);
}

template <class S>
int launch_summary(const ScanSummaryParams& p, cudaStream_t stream) {
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
  return launch_layout<S, OpKind::kSummary>(plan.layout, plan.args, stream);
}

// One explicit instantiation set per element type, in scan_<dtype>.cu.
#define SEQPAR_INSTANTIATE_CUDA_SCAN(S)                                                        \
  template int launch_forward<S>(const ScanForwardParams&, cudaStream_t);                     \
  template int launch_backward<S>(const ScanBackwardParams&, cudaStream_t);                   \
  template int launch_summary<S>(const ScanSummaryParams&, cudaStream_t);

}  // namespace seqpar::kernels::cuda::detail
