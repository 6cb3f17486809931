// The single-pass scan kernel shared by forward, backward and summary.
//
// A CTA of kNumThreads threads owns one tile: kCols sequences ("columns") x kTileLen steps of
// the walk index u. Thread (col, row) owns kItems consecutive steps of column col:
//   1. it loads its items once (128-bit vector loads when kVec) and folds them serially into
//      one affine map,
//   2. rows of a warp are combined with shuffles (stride kCols lanes), warps through shared
//      memory, giving every thread its exclusive in-tile prefix and the tile aggregate,
//   3. warp 0 publishes the aggregate, finds the prefix of all earlier tiles of the same
//      columns by decoupled look-back over per-tile status flags in global scratch, and
//      publishes the inclusive prefix (see look_back below),
//   4. every thread replays its items from the state entering its chunk and writes outputs.
// Inputs are read once and outputs written once; the only other traffic is O(kCols) scratch
// values per tile and one neighbouring element per warp edge in backward (an L2 hit).
//
// kCols = 1 is the time-contiguous layout (a column is one (batch, channel) sequence, threads
// run along time, rows are combined with 5 shuffle rounds); kCols = 8 or 32 is the
// channel-contiguous layout (lanes run across channels so each load instruction is coalesced).
// Tiles get their index from an atomic counter, not blockIdx, so a tile's predecessors have
// always started: the look-back can spin without deadlock whatever order the hardware
// schedules CTAs in. The look-back scratch is indexed per column group (group * time_tiles +
// j), independently of that order.
//
// Backward runs the same machinery on the time-reversed walk (the host flips the pointers)
// with coefficient conj(a_{t+1}) and input g_t, which yields lam_t (scan_params.h).
// Packed sequences (args.seg_bounds) fold each segment start into that step's map
// (scan_segments.cuh); the rest of the kernel does not see them.
#pragma once

#include <cuda/atomic>

#include "scan_args.h"
#include "scan_plan.h"
#include "scan_segments.cuh"
#include "scan_types.cuh"

// Predecessors each lane inspects per look-back round with 32 and with 8 columns per CTA
// (tuning knobs, see scan_plan.h and docs/cuda.md, "Tuning"). On a GPU, 32 columns per CTA
// are chosen only with enough column groups to chain tiles (fit_to_device), so their
// look-back runs in builds with SEQPAR_CUDA_NARROW_CHANNELS=0 or SEQPAR_CUDA_AUTO_CHAIN=0 and
// in the host emulator's tile-order tests.
#ifndef SEQPAR_CUDA_DEPTH32
#define SEQPAR_CUDA_DEPTH32 8
#endif
#ifndef SEQPAR_CUDA_DEPTH8
#define SEQPAR_CUDA_DEPTH8 2
#endif

// The host emulator checks that every 128-bit access is 16-byte aligned (x86 would not fault).
#ifndef SEQPAR_ASSERT_ALIGNED16
#define SEQPAR_ASSERT_ALIGNED16(p)
#endif

namespace seqpar::kernels::cuda::detail {

template <class S, int K>
__device__ __forceinline__ void load_vec(const S* p, S (&out)[K]) {
  constexpr int kV = 16 / sizeof(S);
  static_assert(K % kV == 0, "items per thread must be a multiple of the vector width");
  SEQPAR_ASSERT_ALIGNED16(p);
#pragma unroll
  for (int i = 0; i < K / kV; ++i) {
    const uint4 raw = *reinterpret_cast<const uint4*>(p + i * kV);
    std::memcpy(&out[i * kV], &raw, 16);
  }
}
template <class S, int K>
__device__ __forceinline__ void store_vec(S* p, const S (&in)[K]) {
  constexpr int kV = 16 / sizeof(S);
  SEQPAR_ASSERT_ALIGNED16(p);
#pragma unroll
  for (int i = 0; i < K / kV; ++i) {
    uint4 raw;
    std::memcpy(&raw, &in[i * kV], 16);
    *reinterpret_cast<uint4*>(p + i * kV) = raw;
  }
}

// Loads steps u0..u0+K-1 of one sequence (seq points at u = 0) as Val (the storage widened to
// at least float; widened to Acc where used); steps outside [0, T), and whole chunks of absent
// operands or columns, read as `fill`.
template <class S, int K, bool kVec, class Val>
__device__ __forceinline__ void load_chunk(const S* seq, int64_t st, int64_t u0, int64_t T,
                                           bool present, Val fill, Val (&out)[K]) {
  if (!present) {
#pragma unroll
    for (int k = 0; k < K; ++k) out[k] = fill;
    return;
  }
  if constexpr (kVec) {
    if (u0 >= 0 && u0 + K <= T) {
      S raw[K];
      if (st > 0) {
        load_vec(seq + u0, raw);
#pragma unroll
        for (int k = 0; k < K; ++k) out[k] = to_val(raw[k]);
      } else {
        load_vec(seq - (u0 + K - 1), raw);
#pragma unroll
        for (int k = 0; k < K; ++k) out[k] = to_val(raw[K - 1 - k]);
      }
      return;
    }
  }
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int64_t u = u0 + k;
    out[k] = (u >= 0 && u < T) ? to_val(seq[u * st]) : fill;
  }
}

template <class S, int K, bool kVec>
__device__ __forceinline__ void store_chunk(S* seq, int64_t st, int64_t u0, int64_t T,
                                            const S (&in)[K]) {
  if constexpr (kVec) {
    if (u0 >= 0 && u0 + K <= T) {
      if (st > 0) {
        store_vec(seq + u0, in);
      } else {
        S rev[K];
#pragma unroll
        for (int k = 0; k < K; ++k) rev[k] = in[K - 1 - k];
        store_vec(seq - (u0 + K - 1), rev);
      }
      return;
    }
  }
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int64_t u = u0 + k;
    if (u >= 0 && u < T) seq[u * st] = in[k];
  }
}

__device__ __forceinline__ int load_flag(const int* p) {
  ::cuda::atomic_ref<const int, ::cuda::thread_scope_device> ref(*p);
  return ref.load(::cuda::memory_order_acquire);
}
__device__ __forceinline__ void store_flag(int* p, int v) {
  ::cuda::atomic_ref<int, ::cuda::thread_scope_device> ref(*p);
  ref.store(v, ::cuda::memory_order_release);
}

// Publishes one map per column of a tile (lanes 0..kCols-1 of warp 0 hold them), then the
// tile's flag. Each lane fences its own stores; the warp barrier orders them before lane 0's
// release store of the flag.
template <int kCols, class Acc>
__device__ __forceinline__ void publish(Map<Acc>* slot, int* flag, int value, const Map<Acc>& m,
                                        int lane) {
  if (lane < kCols) store_cg(slot + lane, m);
  __threadfence();
  __syncwarp();
  if (lane == 0) store_flag(flag, value);
}

// Decoupled look-back, run by all 32 lanes of warp 0 of tile j (j >= 1) of one column group.
// Each round inspects kSlots * kDepth predecessors: lane l serves column l % kCols and lane
// slot l / kCols, which covers kDepth consecutive predecessors (independent loads, so one
// round costs about one L2 round trip). With 32 columns per CTA there is one lane slot, so
// the depth (8) is what keeps a long chain of tiles from being walked one at a time.
// The warp waits until every inspected tile has published something, takes aggregates up to
// the nearest inclusive prefix, composes each lane's window serially and the lane slots with
// a non-commutative tree (slot 0 is the latest), and repeats further back until an inclusive
// prefix is found; tile 0 always publishes one. Lanes serving the same slot read the same
// flags in the same instructions, so they take the same decisions.
// Returns, in lanes 0..kCols-1, the composition of all tiles before j of that column.
template <int kCols, class Acc>
__device__ __forceinline__ Map<Acc> look_back(const int* flags, const Map<Acc>* aggregates,
                                              const Map<Acc>* inclusives, int64_t j, int lane) {
  constexpr int kSlots = 32 / kCols;
  constexpr int kDepth = kCols >= 32 ? SEQPAR_CUDA_DEPTH32 : (kCols >= 8 ? SEQPAR_CUDA_DEPTH8 : 1);
  constexpr int kPerRound = kSlots * kDepth;
  const int slot = lane / kCols;
  const int col = lane % kCols;
  Map<Acc> prefix = identity_map<Acc>();
  for (int64_t newest = j - 1;; newest -= kPerRound) {
    const int64_t latest = newest - int64_t(slot) * kDepth;  // this lane's first predecessor
    int flag[kDepth];
    for (;;) {
      bool ready = true;
#pragma unroll
      for (int d = 0; d < kDepth; ++d) {
        // Before tile 0 counts as inclusive; never used, since tile 0 itself is inclusive.
        flag[d] = (latest - d >= 0) ? load_flag(flags + latest - d) : kFlagInclusive;
        ready = ready && flag[d] != kFlagEmpty;
      }
      if (__all_sync(kFullMask, ready)) break;
      __nanosleep(64);
    }
    int first_inclusive = kDepth;  // within this lane's window
#pragma unroll
    for (int d = kDepth - 1; d >= 0; --d) {
      if (flag[d] == kFlagInclusive) first_inclusive = d;
    }
    const unsigned inclusive_lanes = __ballot_sync(kFullMask, first_inclusive < kDepth);
    const int nearest_slot = inclusive_lanes ? (__ffs(inclusive_lanes) - 1) / kCols : kSlots;
    Map<Acc> item = identity_map<Acc>();
    if (slot <= nearest_slot) {
#pragma unroll
      for (int d = 0; d < kDepth; ++d) {
        if (d <= first_inclusive) {  // first_inclusive == kDepth for slots before the nearest
          const int64_t pred = latest - d;
          const Map<Acc> m = d == first_inclusive ? load_cg(inclusives + pred * kCols + col)
                                                  : load_cg(aggregates + pred * kCols + col);
          item = compose(item, m);
        }
      }
    }
#pragma unroll
    for (int d = 1; d < kSlots; d *= 2) {
      const Map<Acc> earlier = shfl_down(item, d * kCols);
      if ((slot & (2 * d - 1)) == 0 && slot + d < kSlots) item = compose(item, earlier);
    }
    prefix = compose(prefix, item);
    if (inclusive_lanes) break;
  }
  return prefix;
}

// Deterministic mode: the prefix of tile j is always the inclusive prefix of tile j-1, so
// every tile's prefix is composed in one fixed order, (((t0) o t1) o ...), and results are
// bitwise identical run to run. The cost is one dependent round trip per tile along each
// chain instead of the decoupled look-back's overlap.
template <int kCols, class Acc>
__device__ __forceinline__ Map<Acc> wait_for_inclusive(const int* flags, const Map<Acc>* inclusives,
                                                       int64_t j, int lane) {
  while (!__all_sync(kFullMask, load_flag(flags + j - 1) == kFlagInclusive)) __nanosleep(32);
  return load_cg(inclusives + (j - 1) * kCols + lane % kCols);
}

template <class S, OpKind kOp, int kCols, bool kVec, int kItems, int kNumThreads>
__global__ void __launch_bounds__(kNumThreads, min_blocks_for<S, kOp, kCols>())
    scan_tile_kernel(const KernelArgs args) {
  using Val = typename Traits<S>::Val;
  using Acc = typename Traits<S>::Acc;
  using M = Map<Acc>;
  constexpr int K = kItems;
  constexpr int kWarps = kNumThreads / 32;
  constexpr int kRowsPerWarp = 32 / kCols;
  constexpr int64_t kTileLen = int64_t(kNumThreads / kCols) * K;
  static_assert(kNumThreads % 32 == 0 && 32 % kCols == 0, "bad tile shape");

  __shared__ M warp_aggregate[kWarps][kCols];
  __shared__ Acc tile_state_in[kCols];
  __shared__ unsigned int tile_index;
  __shared__ int64_t tile_segments[2];  // segments holding the tile's first and last step

  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int col = tid % kCols;
  const int row_in_warp = lane / kCols;

  const bool segmented = args.seg_bounds != nullptr;
  if (tid == 0) {
    tile_index = atomicAdd(args.tile_counter, 1u);
    if (segmented) {
      // Times of the tile's walk steps, clamped to [0, T): the range every thread searches.
      constexpr int64_t kLen = int64_t(kNumThreads / kCols) * kItems;
      const int64_t w = int64_t(tile_index) / (args.batch * args.channel_blocks);
      const int64_t w0 = w * kLen - args.phase > 0 ? w * kLen - args.phase : 0;
      const int64_t w1 = w * kLen + kLen - 1 - args.phase < args.time - 1
                             ? w * kLen + kLen - 1 - args.phase
                             : args.time - 1;
      const int64_t t0 = kOp == OpKind::kBackward ? args.time - 1 - w1 : w0;
      const int64_t t1 = kOp == OpKind::kBackward ? args.time - 1 - w0 : w1;
      tile_segments[0] = segment_search(args.seg_bounds, 0, args.seg_count - 1, t0);
      tile_segments[1] = segment_search(args.seg_bounds, tile_segments[0], args.seg_count - 1, t1);
    }
  }
  __syncthreads();
  // Dynamic tile index -> (time tile j, column group). Column groups vary fastest, so tiles
  // running at the same time cover the same time range of every group: in the
  // channel-contiguous layout neighbouring CTAs then read neighbouring bytes of each row, and a
  // tile's predecessor (j - 1, same group) was handed out `groups` indices earlier.
  const int64_t tile = tile_index;
  const int64_t groups = args.batch * args.channel_blocks;
  const int64_t j = tile / groups;
  const int64_t group = tile - j * groups;
  const int64_t b = group / args.channel_blocks;
  const int64_t c = (group - b * args.channel_blocks) * kCols + col;
  const bool col_ok = c < args.channels;
  const int64_t T = args.time;
  // Walk step of this thread's first item; negative only in the first tile of a vectorized
  // launch, whose first args.phase steps are padding that aligns the chunks (scan_plan.h).
  const int64_t u0 = j * kTileLen + int64_t(tid / kCols) * K - args.phase;

  auto seq_in = [&](const WalkOperand& x) {
    return static_cast<const S*>(x.p) + b * x.sb + c * x.sc;
  };
  auto seq_out = [&](const OutOperand& y) { return static_cast<S*>(y.p) + b * y.sb + c * y.sc; };

  // ---- 1. load and fold this thread's items -------------------------------------------------
  // Inputs stay in Val (the storage's register cost) and are widened to Acc where they meet
  // the carried state.
  Val coef[K], add[K];
  Val a0_conj = acc_one<Val>();  // backward: conj(a_0), held by the thread whose chunk ends the walk
  if constexpr (kOp == OpKind::kBackward) {
    Val a_walk[K];
    load_chunk<S, K, kVec>(seq_in(args.x0), args.x0.st, u0, T, col_ok, acc_one<Val>(), a_walk);
    // coef at step u is conj(a at step u-1); step u-1 of the first item is the previous row's
    // last item (shuffle) or, at a warp edge, one extra load that hits L2.
    Val before = shfl_up(a_walk[K - 1], kCols);
    if (row_in_warp == 0) {
      before = (col_ok && u0 >= 1 && u0 - 1 < T) ? to_val(seq_in(args.x0)[(u0 - 1) * args.x0.st])
                                                : acc_one<Val>();
    }
    if (u0 <= 0) before = acc_one<Val>();
    coef[0] = conj_of(before);
#pragma unroll
    for (int k = 1; k < K; ++k) coef[k] = conj_of(a_walk[k - 1]);
#pragma unroll
    for (int k = 0; k < K; ++k) {
      if (u0 + k >= T || u0 + k <= 0) coef[k] = acc_one<Val>();
      if (u0 + k == T - 1) a0_conj = conj_of(a_walk[k]);
    }
    load_chunk<S, K, kVec>(seq_in(args.x1), args.x1.st, u0, T, col_ok && args.x1.p != nullptr,
                           acc_zero<Val>(), add);
  } else {
    load_chunk<S, K, kVec>(seq_in(args.x0), args.x0.st, u0, T, col_ok, acc_one<Val>(), coef);
    load_chunk<S, K, kVec>(seq_in(args.x1), args.x1.st, u0, T, col_ok, acc_zero<Val>(), add);
  }
  // Segment starts in walk order become maps (0, ...) (scan_segments.cuh): forward, the first
  // step of a segment takes coef * init + b; backward, its last step g + grad_h_last.
  if (segmented && col_ok) {
    SegmentCursor cur;
    bool started = false;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int64_t u = u0 + k;
      if (u < 0 || u >= T) continue;
      const int64_t t = kOp == OpKind::kBackward ? T - 1 - u : u;
      if (!started) {
        cur.start(args.seg_bounds, tile_segments[0], tile_segments[1], t);
        started = true;
      } else {
        cur.move_to(t);
      }
      const bool walk_start = kOp == OpKind::kBackward ? t + 1 == cur.end : t == cur.first;
      if (walk_start) {
        const Val init = args.s0.p != nullptr
                             ? to_val(static_cast<const S*>(args.s0.p)[cur.seg * args.s0.sb + c * args.s0.sc])
                             : acc_zero<Val>();
        add[k] = kOp == OpKind::kBackward ? add[k] + init : coef[k] * init + add[k];
        coef[k] = acc_zero<Val>();
      }
    }
  }
  M chunk = identity_map<Acc>();
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const Acc c = widen<Acc>(coef[k]);
    chunk = M{c * chunk.A, c * chunk.B + widen<Acc>(add[k])};
  }

  // ---- 2. in-tile scan: rows of a warp by shuffles, warps through shared memory -----------
  M inclusive = chunk;
#pragma unroll
  for (int d = 1; d < kRowsPerWarp; d *= 2) {
    const M earlier = shfl_up(inclusive, d * kCols);
    if (row_in_warp >= d) inclusive = compose(inclusive, earlier);
  }
  if (row_in_warp == kRowsPerWarp - 1) warp_aggregate[warp][col] = inclusive;
  M exclusive = shfl_up(inclusive, kCols);
  if (row_in_warp == 0) exclusive = identity_map<Acc>();
  __syncthreads();

  // ---- 3. tile prefix by decoupled look-back (warp 0) -------------------------------------
  if (warp == 0) {
    M aggregate = warp_aggregate[0][col];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) aggregate = compose(warp_aggregate[w][col], aggregate);

    const int64_t first = group * args.time_tiles;  // scratch index of this group's tile 0
    int* flags = args.flags + first;
    M* aggregates = static_cast<M*>(args.aggregates) + first * kCols;
    M* inclusives = static_cast<M*>(args.inclusives) + first * kCols;
    M prefix = identity_map<Acc>();
    if (j > 0 && args.chained) {
      prefix = wait_for_inclusive<kCols>(flags, inclusives, j, lane);
    } else if (j > 0) {
      publish<kCols>(aggregates + j * kCols, flags + j, kFlagAggregate, aggregate, lane);
      prefix = look_back<kCols>(flags, aggregates, inclusives, j, lane);
    }
    const M tile_inclusive = compose(aggregate, prefix);
    if (j + 1 < args.time_tiles) {
      publish<kCols>(inclusives + j * kCols, flags + j, kFlagInclusive, tile_inclusive, lane);
    }
    if (lane < kCols && col_ok) {
      if constexpr (kOp == OpKind::kSummary) {
        if (j + 1 == args.time_tiles) {
          const int64_t z0 = b * args.z0.sb + c * args.z0.sc;
          const int64_t z1 = b * args.z1.sb + c * args.z1.sc;
          static_cast<S*>(args.z0.p)[z0] = from_acc<S>(tile_inclusive.A);
          static_cast<S*>(args.z1.p)[z1] = from_acc<S>(tile_inclusive.B);
        }
      } else {
        Acc init = acc_zero<Acc>();
        if (args.s0.p != nullptr) {
          init = to_acc<S>(static_cast<const S*>(args.s0.p)[b * args.s0.sb + c * args.s0.sc]);
        }
        tile_state_in[lane] = apply(prefix, init);
      }
    }
  }
  if constexpr (kOp == OpKind::kSummary) return;
  __syncthreads();

  // ---- 4. replay from the state entering this chunk and write --------------------------------
  Acc state = tile_state_in[col];
  for (int w = 0; w < warp; ++w) state = apply(warp_aggregate[w][col], state);
  state = apply(exclusive, state);

  // Lanes of absent columns (c >= channels) stay to the end because of the shuffles below;
  // they only skip their stores.
  if constexpr (kOp == OpKind::kForward) {
    S out[K];
    // With segments: each segment's last step writes its row of h_last.
    const bool seg_out = segmented && col_ok && args.z0.p != nullptr;
    SegmentCursor cur;
    bool started = false;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      state = widen<Acc>(coef[k]) * state + widen<Acc>(add[k]);
      out[k] = from_acc<S>(state);
      if (!segmented && u0 + k == T - 1 && col_ok && args.z0.p != nullptr) {
        static_cast<S*>(args.z0.p)[b * args.z0.sb + c * args.z0.sc] = out[k];
      }
      const int64_t u = u0 + k;
      if (seg_out && u >= 0 && u < T) {
        if (!started) {
          cur.start(args.seg_bounds, tile_segments[0], tile_segments[1], u);
          started = true;
        } else {
          cur.move_to(u);
        }
        if (u + 1 == cur.end) static_cast<S*>(args.z0.p)[cur.seg * args.z0.sb + c * args.z0.sc] = out[k];
      }
    }
    if (col_ok) store_chunk<S, K, kVec>(seq_out(args.y0), args.y0.st, u0, T, out);
  } else if constexpr (kOp == OpKind::kBackward) {
    // grad_a_t = lam_t * conj(h_{t-1}); in walk order h_{t-1} is h at step u+1, and past the
    // last step it is h0 (zeros when absent). Step u0+K is the next row's first item.
    Val h_walk[K];
    load_chunk<S, K, kVec>(seq_in(args.x2), args.x2.st, u0, T, col_ok, acc_zero<Val>(), h_walk);
    const Val h0 = (col_ok && args.s1.p != nullptr)
                       ? to_val(static_cast<const S*>(args.s1.p)[b * args.s1.sb + c * args.s1.sc])
                       : acc_zero<Val>();
    const int64_t u_after = u0 + K;
    Val h_after = shfl_down(h_walk[0], kCols);
    if (row_in_warp == kRowsPerWarp - 1) {
      h_after = (col_ok && u_after < T) ? to_val(seq_in(args.x2)[u_after * args.x2.st]) : h0;
    }
    S grad_a[K], grad_b[K];
    // With segments: a segment's first step in time (the last of its walk) reads h0 row i as
    // h_{t-1} and writes grad_h0 row i = conj(a_t) lam_t (a_t loaded again: one per segment).
    SegmentCursor cur;
    bool started = false;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      state = widen<Acc>(coef[k]) * state + widen<Acc>(add[k]);  // lam at step u0+k
      const int64_t u = u0 + k;
      Val h_prev = (k + 1 < K) ? h_walk[k + 1] : h_after;
      if (!segmented) {
        if (u + 1 >= T) h_prev = h0;
      } else if (col_ok && u >= 0 && u < T) {
        const int64_t t = T - 1 - u;
        if (!started) {
          cur.start(args.seg_bounds, tile_segments[0], tile_segments[1], t);
          started = true;
        } else {
          cur.move_to(t);
        }
        if (t == cur.first) {
          h_prev = args.s1.p != nullptr
                       ? to_val(static_cast<const S*>(args.s1.p)[cur.seg * args.s1.sb + c * args.s1.sc])
                       : acc_zero<Val>();
          if (args.z0.p != nullptr) {
            const Val a_t = to_val(seq_in(args.x0)[u * args.x0.st]);
            static_cast<S*>(args.z0.p)[cur.seg * args.z0.sb + c * args.z0.sc] =
                from_acc<S>(widen<Acc>(conj_of(a_t)) * state);
          }
        }
      }
      grad_b[k] = from_acc<S>(state);
      grad_a[k] = from_acc<S>(state * widen<Acc>(conj_of(h_prev)));
      if (!segmented && u == T - 1 && col_ok && args.z0.p != nullptr) {
        static_cast<S*>(args.z0.p)[b * args.z0.sb + c * args.z0.sc] =
            from_acc<S>(widen<Acc>(a0_conj) * state);
      }
    }
    if (col_ok) {
      store_chunk<S, K, kVec>(seq_out(args.y0), args.y0.st, u0, T, grad_a);
      store_chunk<S, K, kVec>(seq_out(args.y1), args.y1.st, u0, T, grad_b);
    }
  }
}

// T == 0: the output state is the input state (or `fallback` when absent).
template <class S>
__global__ void copy_state_kernel(StateOut out, StateIn in, int64_t batch, int64_t channels,
                                  typename Traits<S>::Acc fallback) {
  const int64_t n = batch * channels;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = i / channels, c = i - b * channels;
    const typename Traits<S>::Acc v =
        in.p != nullptr ? to_acc<S>(static_cast<const S*>(in.p)[b * in.sb + c * in.sc]) : fallback;
    static_cast<S*>(out.p)[b * out.sb + c * out.sc] = from_acc<S>(v);
  }
}

// Packed sequences: every empty segment's final state is its initial one (or `fallback`).
template <class S>
__global__ void empty_segments_kernel(StateOut out, StateIn in, const int64_t* bounds,
                                      int64_t count, int64_t channels,
                                      typename Traits<S>::Acc fallback) {
  const int64_t n = count * channels;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t seg = i / channels, c = i - seg * channels;
    if (bounds[seg + 1] > bounds[seg]) continue;
    const typename Traits<S>::Acc v =
        in.p != nullptr ? to_acc<S>(static_cast<const S*>(in.p)[seg * in.sb + c * in.sc]) : fallback;
    static_cast<S*>(out.p)[seg * out.sb + c * out.sc] = from_acc<S>(v);
  }
}

}  // namespace seqpar::kernels::cuda::detail
