// Host-side planning of a CUDA scan launch: walk-order operands, the layout decision and the
// tile geometry. Pure host code (no launches, no CUDA runtime calls) so that it can be
// unit-tested and shared by every launcher.
//
// Layout choice (one place, so that every op agrees):
//   * channels > 1 and every operand has channel stride 1: channel-contiguous kernel, 32 (or 8
//     when channels < 24, or on a device where 32 would give few column groups:
//     fit_to_device) channels per CTA, lanes across channels;
//   * every operand has time stride +-1: time-contiguous kernel, one sequence per CTA, threads
//     along time, 128-bit loads when one phase shift of the chunks makes every operand's
//     chunks 16-byte aligned (see vector_phase), scalar loads otherwise;
//   * anything else: the time-contiguous kernel with scalar loads (correct for any strides).
#pragma once

#include <cstdint>
#include <type_traits>

#include "scan_args.h"
#include "scan_types.cuh"
#include "seqpar/kernels/scan_params.h"

namespace seqpar::kernels::cuda::detail {

// Tile geometry knobs. Fixed at compile time; benchmarks/cuda_variants.sh builds the check
// program with other values (-DSEQPAR_CUDA_THREADS=...) to compare them in one GPU run.
#ifndef SEQPAR_CUDA_THREADS
#define SEQPAR_CUDA_THREADS 256
#endif
#ifndef SEQPAR_CUDA_BWD_THREADS
#define SEQPAR_CUDA_BWD_THREADS 128
#endif
#ifndef SEQPAR_CUDA_AUTO_CHAIN  // 0: never chain on its own (scan_launch.cuh)
#define SEQPAR_CUDA_AUTO_CHAIN 1
#endif
#ifndef SEQPAR_CUDA_ITEMS_2B
#define SEQPAR_CUDA_ITEMS_2B 16
#endif
#ifndef SEQPAR_CUDA_ITEMS_4B
#define SEQPAR_CUDA_ITEMS_4B 16
#endif
// 2-byte types with channels contiguous (kCols > 1) only.
#ifndef SEQPAR_CUDA_ITEMS_2B_CHANNELS
#define SEQPAR_CUDA_ITEMS_2B_CHANNELS SEQPAR_CUDA_ITEMS_2B
#endif
// Channel-contiguous inputs with at least this many channels take 32 channels per CTA, fewer
// take 8 (more column groups, so more chains of tiles, for the same channel count).
#ifndef SEQPAR_CUDA_CH32_MIN_CHANNELS
#define SEQPAR_CUDA_CH32_MIN_CHANNELS 24
#endif
// 1: 32 channels per CTA only where they make at least SMs / 2 column groups (fit_to_device).
#ifndef SEQPAR_CUDA_NARROW_CHANNELS
#define SEQPAR_CUDA_NARROW_CHANNELS 1
#endif
// float32 accumulates in double, which doubles backward's register arrays: with threads
// along time (one column per CTA), 8 items per thread raised float32 backward from 43-66% to
// 60-92% of copy on an H200 while 8 lost 3-13 points in forward and in the channel layouts
// (docs/cuda.md, "Tuning").
#ifndef SEQPAR_CUDA_ITEMS_4B_BWD_TIME
#define SEQPAR_CUDA_ITEMS_4B_BWD_TIME 8
#endif
// Forward along time too: 8 items with four CTAs per SM (SEQPAR_CUDA_FWD_MIN_BLOCKS_4B_TIME
// below) raised float32 forward along time from 77-80% to 85-87% of copy at B*D >= 256 on an
// H200; 8 items alone (82 registers, still two CTAs per SM) had not moved it.
#ifndef SEQPAR_CUDA_ITEMS_4B_FWD_TIME
#define SEQPAR_CUDA_ITEMS_4B_FWD_TIME 8
#endif
constexpr int kNumThreads = SEQPAR_CUDA_THREADS;
// CTAs per SM that ptxas must leave registers for (__launch_bounds__' second argument) in the
// float32 forward, whose float64 state took 114 registers per thread on sm_90 (nvcc 13.0)
// when ptxas was free: two CTAs of 256 threads per SM (16 warps, 25% occupancy, Nsight
// Compute), where bfloat16's 78 fit three. Measured on an H200 in one run (docs/cuda.md,
// "Tuning"): along time (kCols == 1, 8 items) 4 CTAs, 64 registers with 32-48 bytes of spills,
// gave +5 to +8 points at B*D >= 256; with channels contiguous 3 CTAs (80 registers, 96-112
// bytes of spills at 16 items) gave +3 to +10 points, where 4 lost 11 at B*D = 4096.
#ifndef SEQPAR_CUDA_FWD_MIN_BLOCKS_4B
#define SEQPAR_CUDA_FWD_MIN_BLOCKS_4B 3
#endif
#ifndef SEQPAR_CUDA_FWD_MIN_BLOCKS_4B_TIME
#define SEQPAR_CUDA_FWD_MIN_BLOCKS_4B_TIME 4
#endif
// bfloat16 forward with channels contiguous: left free, ptxas gave it 74-76 registers (3 CTAs of
// 256 threads per SM) and Nsight Compute found it waiting on loads (scoreboard stalls 44% of its
// cycles at D = 4096, 64-byte warp loads); a minimum of 4 CTAs (64 registers, 24-78 bytes of
// spills) gave +1 to +8 points of copy bandwidth on every channels shape of an H200
// (docs/cuda.md, "Tuning"). float16 shares the code but was not measured, so it keeps none.
#ifndef SEQPAR_CUDA_FWD_MIN_BLOCKS_BF16_CHANNELS
#define SEQPAR_CUDA_FWD_MIN_BLOCKS_BF16_CHANNELS 4
#endif
template <class S, OpKind kOp, int kCols>
constexpr int min_blocks_for() {
  // 0 asks for no minimum, as if the argument were left out (no .minnctapersm in the PTX).
  // 1 is not the same: with it ptxas gave bfloat16's forward 78 registers instead of 61 and
  // cost it 16 points of copy bandwidth (docs/cuda.md, "Tuning").
  if constexpr (kOp == OpKind::kForward && std::is_same_v<S, __nv_bfloat16> && kCols > 1) {
    return SEQPAR_CUDA_FWD_MIN_BLOCKS_BF16_CHANNELS;
  }
  if constexpr (kOp != OpKind::kForward || sizeof(S) != 4) return 0;
  return kCols == 1 ? SEQPAR_CUDA_FWD_MIN_BLOCKS_4B_TIME : SEQPAR_CUDA_FWD_MIN_BLOCKS_4B;
}

// Threads per CTA of an op. Backward holds ~100 registers per thread; at 128 threads per CTA
// more CTAs fit an SM and its backward bandwidth rose from ~70% to ~88% of copy on an H100
// (docs/cuda.md, "Tuning"); forward and summary keep 256.
template <OpKind kOp>
constexpr int threads_for() {
  return kOp == OpKind::kBackward ? SEQPAR_CUDA_BWD_THREADS : kNumThreads;
}

// Items per thread of an op with kCols columns per CTA: SEQPAR_CUDA_ITEMS_4B (16: four
// 128-bit loads) for 4-byte types, except along time (SEQPAR_CUDA_ITEMS_4B_BWD_TIME,
// SEQPAR_CUDA_ITEMS_4B_FWD_TIME),
// SEQPAR_CUDA_ITEMS_2B for 2-byte types, 8 for 8-byte types (double, complex64), which keeps
// the accumulators of backward in registers.
template <class S, OpKind kOp, int kCols>
constexpr int items_per_thread() {
  if constexpr (sizeof(S) >= 8) return 8;
  if constexpr (sizeof(S) == 2) return kCols > 1 ? SEQPAR_CUDA_ITEMS_2B_CHANNELS : SEQPAR_CUDA_ITEMS_2B;
  if constexpr (kCols == 1 && kOp == OpKind::kBackward) return SEQPAR_CUDA_ITEMS_4B_BWD_TIME;
  if constexpr (kCols == 1 && kOp == OpKind::kForward) return SEQPAR_CUDA_ITEMS_4B_FWD_TIME;
  return SEQPAR_CUDA_ITEMS_4B;
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

// A host-side constant in the accumulation type (Complex has no converting constructor).
template <class Acc>
Acc acc_constant(float v) {
  if constexpr (std::is_same_v<Acc, CFloat> || std::is_same_v<Acc, CDouble>) {
    return Acc{v, 0};
  } else {
    return Acc(v);
  }
}

// The 3-D operands a kernel touches, for the layout decision.
struct LayoutView {
  const void* p;
  int64_t sb, sc, st;
};
inline LayoutView view_of(const WalkOperand& x) { return {x.p, x.sb, x.sc, x.st}; }
inline LayoutView view_of(const OutOperand& x) { return {x.p, x.sb, x.sc, x.st}; }

enum class Layout { kChannels32, kChannels8, kTimeVector, kTimeScalar };

// Vector loads need every chunk of K items to start on a 16-byte boundary in every operand.
// Chunks start at walk steps k*K - phase, so one phase (0 <= phase < 16/sizeof(S)) must line
// them all up: for time stride +1 the element at step u is at p + u, so phase = p mod V (in
// elements); for stride -1 a chunk's lowest address is p - (u0 + K - 1), so
// phase = -(p + 1) mod V. Returns the phase, or -1 when this operand cannot be vectorized.
template <class S>
int64_t vector_phase(const LayoutView& v, int64_t batch, int64_t channels) {
  constexpr int64_t kV = 16 / sizeof(S);
  if (v.st != 1 && v.st != -1) return -1;
  const auto addr = reinterpret_cast<uintptr_t>(v.p);
  if (addr % sizeof(S) != 0) return -1;
  if (batch > 1 && v.sb % kV != 0) return -1;
  if (channels > 1 && v.sc % kV != 0) return -1;
  const int64_t elem = int64_t((addr / sizeof(S)) % kV);
  return v.st > 0 ? elem : (2 * kV - elem - 1) % kV;
}

struct LayoutChoice {
  Layout layout = Layout::kTimeScalar;
  int64_t phase = 0;  // walk steps before step 0 in the first tile (vector layout only)
};

template <class S>
LayoutChoice choose_layout(const LayoutView* views, int n, int64_t batch, int64_t channels) {
  bool channel_unit = channels > 1, time_unit = true, vec = true;
  int64_t phase = -1;
  for (int i = 0; i < n; ++i) {
    if (views[i].p == nullptr) continue;
    channel_unit = channel_unit && views[i].sc == 1;
    time_unit = time_unit && (views[i].st == 1 || views[i].st == -1);
    const int64_t ph = vector_phase<S>(views[i], batch, channels);
    if (ph < 0 || (phase >= 0 && ph != phase)) vec = false;
    phase = ph;
  }
  if (channel_unit) {
    return {channels >= SEQPAR_CUDA_CH32_MIN_CHANNELS ? Layout::kChannels32 : Layout::kChannels8, 0};
  }
  if (time_unit && vec) return {Layout::kTimeVector, phase};
  return {Layout::kTimeScalar, 0};
}

struct Plan {
  KernelArgs args;
  Layout layout = Layout::kTimeScalar;
};

// Whether `groups` column groups are enough for each chain of tiles to have only one or two
// tiles in flight on a device of `multiprocessors` SMs: then waiting for the predecessor's
// inclusive prefix (chained mode) is as fast as the look-back (scan_launch.cuh), and 32
// channels per CTA are kept (fit_to_device).
inline bool many_groups(int64_t groups, int multiprocessors) { return 2 * groups >= multiprocessors; }

// The layout for a device of `multiprocessors` SMs. With few column groups each chain of
// tiles has many tiles in flight, and the tiles wait on the look-back: on an H200 the forward
// at B = 1, D = 256 (8 groups of 32 channels) had its warps waiting at the barrier behind it
// for 65% of their cycles between instructions (Nsight Compute). 8 channels per CTA make four
// times the groups and raised that shape from 50/49% to 64/74% of copy (forward/backward,
// T = 2^20), where at D = 4096 (128 groups of 32, chained) 8 channels lost 21 points
// (docs/cuda.md, "Tuning"). So 32 channels per CTA are kept where they give at least SMs / 2
// groups, the point from which the launch chains tiles instead of looking back
// (scan_launch.cuh).
inline Layout fit_to_device(Layout layout, int64_t batch, int64_t channels, int multiprocessors) {
  if (SEQPAR_CUDA_NARROW_CHANNELS && layout == Layout::kChannels32 &&
      !many_groups(batch * ((channels + 31) / 32), multiprocessors)) {
    return Layout::kChannels8;
  }
  return layout;
}

// What every plan shares: the shape, and the layout chosen from the views of its operands
// (layout, vector phase, and the chained look-back of the deterministic mode).
inline Plan plan_of_shape(const ScanShape& shape) {
  Plan plan;
  plan.args.batch = shape.batch;
  plan.args.time = shape.time;
  plan.args.channels = shape.channels;
  return plan;
}
template <class S, int kViews>
void choose_plan_layout(Plan& plan, const LayoutView (&views)[kViews], bool deterministic) {
  const LayoutChoice choice =
      choose_layout<S>(views, kViews, plan.args.batch, plan.args.channels);
  plan.layout = choice.layout;
  plan.args.phase = choice.phase;
  plan.args.chained = deterministic ? 1 : 0;
}

template <class S>
Plan plan_forward(const ScanForwardParams& p) {
  Plan plan = plan_of_shape(p.shape);
  KernelArgs& args = plan.args;
  args.x0 = walk_in<S>(p.a, false, p.shape.time);
  args.x1 = walk_in<S>(p.b, false, p.shape.time);
  args.y0 = walk_out<S>(p.h, false, p.shape.time);
  args.s0 = state_in(p.h0);
  args.z0 = state_out(p.h_last);
  args.seg_bounds = p.segments.bounds;
  args.seg_count = p.segments.count;
  const LayoutView views[] = {view_of(args.x0), view_of(args.x1), view_of(args.y0)};
  choose_plan_layout<S>(plan, views, p.deterministic);
  return plan;
}

// The adjoint runs from the last step to the first: the walk flips the time axis.
template <class S>
Plan plan_backward(const ScanBackwardParams& p) {
  Plan plan = plan_of_shape(p.shape);
  KernelArgs& args = plan.args;
  args.x0 = walk_in<S>(p.a, true, p.shape.time);
  args.x1 = walk_in<S>(p.grad_h, true, p.shape.time);
  args.x2 = walk_in<S>(p.h, true, p.shape.time);
  args.y0 = walk_out<S>(p.grad_a, true, p.shape.time);
  args.y1 = walk_out<S>(p.grad_b, true, p.shape.time);
  args.s0 = state_in(p.grad_h_last);
  args.s1 = state_in(p.h0);
  args.z0 = state_out(p.grad_h0);
  args.seg_bounds = p.segments.bounds;
  args.seg_count = p.segments.count;
  const LayoutView views[] = {view_of(args.x0), view_of(args.x1), view_of(args.x2),
                              view_of(args.y0), view_of(args.y1)};
  choose_plan_layout<S>(plan, views, p.deterministic);
  return plan;
}

template <class S>
Plan plan_summary(const ScanSummaryParams& p) {
  Plan plan = plan_of_shape(p.shape);
  KernelArgs& args = plan.args;
  args.x0 = walk_in<S>(p.a, false, p.shape.time);
  args.x1 = walk_in<S>(p.b, false, p.shape.time);
  args.z0 = state_out(p.A);
  args.z1 = state_out(p.B);
  const LayoutView views[] = {view_of(args.x0), view_of(args.x1)};
  choose_plan_layout<S>(plan, views, p.deterministic);
  return plan;
}

// Tile geometry of a launch with kCols columns per CTA; fills channel_blocks and time_tiles.
template <class S, int kCols, OpKind kOp>
int64_t plan_tiles(KernelArgs& args) {
  constexpr int64_t kTileLen = int64_t(threads_for<kOp>() / kCols) * items_per_thread<S, kOp, kCols>();
  args.channel_blocks = (args.channels + kCols - 1) / kCols;
  args.time_tiles = (args.time + args.phase + kTileLen - 1) / kTileLen;
  return args.batch * args.channel_blocks * args.time_tiles;
}

}  // namespace seqpar::kernels::cuda::detail
