// The CPU scan engine: scheduling and inner loops shared by forward, backward and summary.
//
// Every pass is a first-order recurrence s <- c_k * s + x_k over steps k = 0..T-1 of batch *
// channels independent sequences; a Policy says how to read (c_k, x_k) and what to emit at each
// step (forward: h; backward: grad_a, grad_b). The engine decides how to cut the work:
//
// * Channel-inner mode (all operands have unit channel stride and channels >= 16): a group is 64 to
//   4096 neighbouring channels of one batch row: a whole row when the row is narrow
//   (kMinWholeRowTileSteps) or one thread runs, else as wide as leaves one group per thread; the
//   inner loop runs across channels and vectorizes. Wide groups matter: each time step of a group
//   is one contiguous run of memory, and with rows of only 64 floats the prefetchers see thousands
//   of short strided streams instead of three long ones.
// * Contiguous mode (time-contiguous operands of a storage type with a vector path, every target
//   built with Highway): a group is one sequence, scanned in registers by vector_scan.h.
// * Time-inner mode (everything else: few channels, general strides, complex64 on SVE, float16
//   along time where the target has no rounding conversion, builds without Highway): a group is up
//   to 8 sequences (4 when time is contiguous, so that one thread walks fewer memory streams); when
//   it has fewer than the chains wanted (8, or 4), each cache-sized block of time is cut into
//   sub-ranges that run as independent chains (their entry states come from the sub-range
//   summaries), so even one sequence is not bound by the latency of one multiply-add chain.
// * When there are too few groups to keep every thread busy, time is cut into cache-sized tiles
//   that threads claim in order. A tile first composes its own summary (A, B) while it streams its
//   inputs into cache, publishes it, looks back over its predecessors' published summaries until it
//   meets one whose inclusive state is known (decoupled look-back, as GPU scans do), publishes its
//   own inclusive state, and then scans from cache. Inputs are read from memory once and outputs
//   written once: 12 B/elem forward in fp32, not the 20 B/elem of reduce-then-scan. A tile whose
//   entering state is already composable when it is claimed skips its summary and scans straight
//   from memory (10-50% of the tiles with two threads, docs/cpu_kernels.md).
//
// Policy interface (S = storage type, Acc = accumulation type of the state, Map = of a step's
// map: Acc for the diagonal scans, a 2x2 matrix for the block scan): the inner loops, written with
// local restrict pointers so that they vectorize; the engine decides which runs on which range.
//   struct Lane;                                   pointers of one sequence at step 0
//   Lane lane(int64_t batch, int64_t channel) const;
//   Lane advance(const Lane&, int64_t k) const;     the same sequence at step k
//   channel mode, n neighbouring channels from `lane`, steps [k0, k1):
//     void channel_aggregate(const Lane&, int n, bool descending, int64_t k0, int64_t k1,
//                            Map* A, Acc* B) const;
//     void channel_run(const Lane&, int n, bool descending, int64_t k0, int64_t k1, Acc* s) const;
//     (descending: visit the lanes of a step through for_lane_blocks in descending blocks)
//   bool time_descends() const;                     step k+1 lies below step k in memory
//   time mode, n chains each starting at its own Lane, `len` steps:
//     void chains_aggregate(const Lane* chains, int n, int64_t len, Map* A, Acc* B) const;
//     void chains_run(const Lane* chains, int n, int64_t len, Acc* s) const;
//   Acc step_last(const Lane&, int64_t k, int64_t l, int64_t row, Acc s) const;
//                                                    step k ends a segment (kSpecialLast);
//                                                    row: its h0 row, 0 without segments
//   Acc initial(int64_t batch, int64_t channel) const;   batch: the segment with segments
//   void finish(int64_t batch, int64_t channel, Acc s) const;
//   static constexpr bool kReversedSteps;           step k is time T-1-k (segments' order)
//
// Segments (packed sequences, scan_segments.h): every range a group runs or summarizes is cut
// at the segment starts; a run loads the segment's initial state at its start and finishes it
// at its end, a summary of a range with a start in it is (0, A_[r,k1) * init + B_[r,k1)) for
// the last start r (the state before the range does not reach its end), and a tile that starts
// a segment runs directly. The inner loops never see a segment.
//   bool unit_channel_stride() const;
#pragma once

#include "target.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <type_traits>
#include <vector>

#include "dispatch.h"
#include "element_types.h"
#include "scan_segments.h"
#include "thread_pool.h"

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET::engine {

// Most lanes of a channel-inner group: rows of up to 4096 channels stay whole (one group per
// row with one thread), which streams far better than rows cut between groups (docs/
// cpu_kernels.md); the float64 state of a full group is 32 KiB, in L1 and L2.
constexpr int kChannelLanes = 4096;
constexpr int kMinChannelLanes = 64;
constexpr int kTimeLanes = 8;       // sequences of a time-inner group (at most)
constexpr int kChains = 8;          // independent chains wanted in time-inner mode (at most)
constexpr int kMaxChains = kChains * kTimeLanes;
// With time-contiguous operands every chain of a time-inner group is its own memory stream per
// operand, and 8 chains (24 streams in forward) outran the prefetchers: complex64, before it
// had a vector path, ran its forward at 8.1 (one thread) and 8.9 GB/s (two) with 16 sequences;
// 4 lanes and 4 chains (12 streams) at 12.6 and 23.8 GB/s (avx2, medians of three alternating
// runs, docs/cpu_kernels.md). Sequences whose
// neighbours share cache lines (unit channel stride, few channels) keep 8 lanes, so that one
// group reads whole lines.
constexpr int kTimeLanesContiguous = 4;
constexpr int kChainsContiguous = 4;
// The time-inner chains of the 2x2 block scan's backward (block_backward_policy.h) prefetch
// their operands this many steps ahead, every kPrefetchEvery steps: with five streams per chain
// the hardware prefetchers fell behind, and the backward of (64, 2^16, 1) stalled on its loads
// at 18-25% of triad (perf annotate: the loads' successors held half the samples); 160 steps
// ran faster than 64 and 384. The forward (three streams) ran slower with it on an idle machine
// and does without (docs/block_scan.md).
constexpr int64_t kPrefetchSteps = 160;
constexpr int64_t kPrefetchEvery = 4;
// Prefetch of the element `steps` steps after p along `stride` (elements); a prefetch past an
// operand's end is harmless (it never faults).
template <bool kWrite = false, class X>
inline void prefetch_ahead(X* p, int64_t stride, int64_t steps = kPrefetchSteps) {
  __builtin_prefetch(p + steps * stride, kWrite ? 1 : 0, 3);
}
// Runs f(std::integral_constant<int, k>{}, c0) over chains [c0, c0 + k) for consecutive runs
// of at most kMaxFixedChains chains: a policy's loop over its chains then has a count known at
// compile time, unrolls, and keeps each chain's state in registers (block_backward_policy.h:
// through memory, with a run-time count, the state made a store and a load every step).
constexpr int kMaxFixedChains = 8;
template <int K, class F>
inline void with_chain_count(int n, F&& f) {
  if constexpr (K > 1)
    if (n < K) return with_chain_count<K - 1>(n, f);
  f(std::integral_constant<int, K>{});
}
template <class F>
inline void for_fixed_chain_runs(int n, F&& f) {
  for (int c0 = 0; c0 < n; c0 += kMaxFixedChains)
    with_chain_count<kMaxFixedChains>(std::min(kMaxFixedChains, n - c0),
                                      [&](auto k) { f(k, c0); });
}
// Input bytes of one look-back tile. A tile's inputs are read twice (summary, then scan), the
// second time from cache; 1 MiB tiles (the second read partly from L3) ran the two-thread
// tiled shapes as fast forward and faster backward than 256 KiB tiles in the same session
// (Zen 4, avx2 target: B*D = 1 backward 35 -> 41-44 GB/s, 256 channels 30 / 34 -> 34-36 /
// 40 GB/s forward / backward).
constexpr int64_t kTileBytes = 1024 * 1024;
constexpr int64_t kBlockBytes = 32 * 1024;   // input bytes of one time-inner block
// Channel-inner rows are kept whole, and cut into look-back time tiles when there are fewer
// rows than threads, if a tile holds at least this many steps (rows of up to 8 KiB of input,
// 1024 float32 channels); wider rows are split between the threads instead. Measured with
// seqpar-bench local_scan --bd on Zen 4, two threads, float32, avx2 target (docs/
// cpu_kernels.md): whole rows in tiles beat split rows up to 1024 channels (256: 52 / 46% ->
// 77-88 / 80-96% of triad forward / backward) and lost at 2048 (44-50 / 59-69%, split
// 59 / 64%), where a tile holds 64 steps.
constexpr int64_t kMinWholeRowTileSteps = 128;

// A step's map and offset: s -> A * s + B. The diagonal policies' map is a scalar of the
// state's own type; the block scan's a 2x2 matrix acting on a 2-vector (block_types.h).
template <class Map, class Acc = Map>
struct Summary {
  Map A;
  Acc B;
};
template <class P>
using map_t = typename P::Map;

// Input bytes per step of one sequence, which the tile and block sizes are cut by: two
// elements (a, b) for the diagonal policies, P::kStepInputs elements where a policy says.
template <class P, class = void>
struct StepInputs {
  static constexpr int value = 2;
};
template <class P>
struct StepInputs<P, std::void_t<decltype(P::kStepInputs)>> {
  static constexpr int value = P::kStepInputs;
};
template <class P>
constexpr int64_t input_bytes() {
  return int64_t(StepInputs<P>::value) * int64_t(sizeof(typename P::S));
}

// Sequences (and chains) of a time-inner group when every operand's steps are packed:
// kTimeLanesContiguous, or P::kContiguousTimeLanes where a policy says.
template <class P, class = void>
struct ContiguousTimeLanes {
  static constexpr int value = kTimeLanesContiguous;
};
template <class P>
struct ContiguousTimeLanes<P, std::void_t<decltype(P::kContiguousTimeLanes)>> {
  static constexpr int value = P::kContiguousTimeLanes;
};

// (A2, B2) o (A1, B1): apply 1 first, then 2.
template <class Map, class Acc>
inline Summary<Map, Acc> compose(Summary<Map, Acc> later, Summary<Map, Acc> earlier) {
  return {later.A * earlier.A, later.A * earlier.B + later.B};
}

// Work decomposition for one call.
struct Layout {
  bool channel_inner = false;
  bool contiguous = false;  // one time-contiguous sequence per group, vector scan in time
  int64_t batch = 0, channels = 0, time = 0;
  int64_t groups = 0;
  int64_t groups_per_batch = 0;  // channel-inner only
  int64_t width = 0;             // channel-inner only: channels per group
  int max_lanes = 0;
  int time_lanes = kTimeLanes;   // time-inner only: sequences per group
  int chains = kChains;          // time-inner only: chains wanted per group
};

template <class P>
Layout make_layout(const P& p, int64_t batch, int64_t time, int64_t channels, int threads) {
  Layout lay;
  lay.batch = batch;
  lay.time = time;
  lay.channels = channels;
  lay.channel_inner = channels >= 16 && p.unit_channel_stride();
  lay.contiguous = !lay.channel_inner && P::kHasContiguous && p.unit_time_direction() != 0;
  if (lay.contiguous) {
    lay.groups = batch * channels;
    lay.max_lanes = 1;
  } else if (lay.channel_inner) {
    int64_t w = kMinChannelLanes;
    const auto groups_of = [&](int64_t width) { return batch * ((channels + width - 1) / width); };
    // Narrow rows stay whole even when that leaves fewer groups than threads: the threads then
    // share the rows through look-back time tiles instead (wants_time_tiles), and a tile of
    // whole rows is one contiguous block of each operand.
    const bool whole_rows =
        channels * input_bytes<P>() * kMinWholeRowTileSteps <= kTileBytes;
    while (2 * w <= kChannelLanes && w < channels &&
           (whole_rows || groups_of(2 * w) >= int64_t(threads)))
      w *= 2;
    lay.width = w;
    lay.groups_per_batch = (channels + w - 1) / w;
    lay.groups = batch * lay.groups_per_batch;
    lay.max_lanes = static_cast<int>(std::min<int64_t>(w, channels));
  } else {
    if (p.unit_time_direction() != 0) {
      lay.time_lanes = ContiguousTimeLanes<P>::value;
      lay.chains = std::min(kChainsContiguous, lay.time_lanes);
    }
    const int64_t m = batch * channels;
    lay.groups = (m + lay.time_lanes - 1) / lay.time_lanes;
    lay.max_lanes = static_cast<int>(std::min<int64_t>(lay.time_lanes, m));
  }
  return lay;
}

// The lanes of one group: channel-inner groups have one Lane and `count` channel offsets;
// time-inner groups have `count` Lanes.
template <class P>
struct Group {
  typename P::Lane lanes[kTimeLanes];
  int64_t batch[kTimeLanes];
  int64_t channel[kTimeLanes];
  int count = 0;
};

template <class P>
Group<P> make_group(const P& p, const Layout& lay, int64_t g) {
  Group<P> grp;
  if (lay.contiguous) {
    grp.count = 1;
    grp.batch[0] = g / lay.channels;
    grp.channel[0] = g % lay.channels;
    grp.lanes[0] = p.lane(grp.batch[0], grp.channel[0]);
  } else if (lay.channel_inner) {
    const int64_t bi = g / lay.groups_per_batch;
    const int64_t c0 = (g % lay.groups_per_batch) * lay.width;
    grp.count = static_cast<int>(std::min<int64_t>(lay.width, lay.channels - c0));
    grp.lanes[0] = p.lane(bi, c0);
    grp.batch[0] = bi;
    grp.channel[0] = c0;
  } else {
    const int64_t m0 = g * lay.time_lanes;
    grp.count = static_cast<int>(std::min<int64_t>(lay.time_lanes, lay.batch * lay.channels - m0));
    for (int i = 0; i < grp.count; ++i) {
      grp.batch[i] = (m0 + i) / lay.channels;
      grp.channel[i] = (m0 + i) % lay.channels;
      grp.lanes[i] = p.lane(grp.batch[i], grp.channel[i]);
    }
  }
  return grp;
}

template <class P, class Acc>
void load_initial(const P& p, const Layout& lay, const Group<P>& grp, Acc* s) {
  for (int l = 0; l < grp.count; ++l)
    s[l] = lay.channel_inner ? p.initial(grp.batch[0], grp.channel[0] + l)
                             : p.initial(grp.batch[l], grp.channel[l]);
}

template <class P, class Acc>
void store_final(const P& p, const Layout& lay, const Group<P>& grp, const Acc* s) {
  for (int l = 0; l < grp.count; ++l) {
    if (lay.channel_inner)
      p.finish(grp.batch[0], grp.channel[0] + l, s[l]);
    else
      p.finish(grp.batch[l], grp.channel[l], s[l]);
  }
}

// Channel of lane l of a group.
template <class P>
int64_t lane_channel(const Layout& lay, const Group<P>& grp, int l) {
  return lay.channel_inner ? grp.channel[0] + l : grp.channel[l];
}
// With segments (batch 1): the initial / final state of segment `row` for every lane.
template <class P, class Acc>
void load_segment_initial(const P& p, const Layout& lay, const Group<P>& grp, int64_t row,
                          Acc* s) {
  for (int l = 0; l < grp.count; ++l) s[l] = p.initial(row, lane_channel(lay, grp, l));
}
template <class P, class Acc>
void store_segment_final(const P& p, const Layout& lay, const Group<P>& grp, int64_t row,
                         const Acc* s) {
  for (int l = 0; l < grp.count; ++l) p.finish(row, lane_channel(lay, grp, l), s[l]);
}

// ---- channel-inner loops -------------------------------------------------------------------

// Visits lanes [0, n) of one step of a channel-inner group, as f(l0, l1) on blocks. A pass
// whose time walk descends in memory (the backward pass; a reverse forward scan) reads its
// rows in descending address order; when the group holds whole rows it visits them in
// descending blocks of 128 bytes of storage (32 float32 lanes, 16 complex64 or float64, 64
// bfloat16 or float16), so that each operand's address stream descends with only short
// upward runs and hardware prefetchers follow it. Measured with seqpar-bench local_scan on
// Zen 4 (docs/cpu_kernels.md): float32, one thread, 256 and 4096 channels: rows read upwards
// inside the descending walk ran the backward at 26-51% of triad, blocks of 32 lanes at
// 82-97%, blocks of 64 lost half of that on the 4096-channel shape with AVX-512; complex64
// with blocks of 32 lanes (256 bytes) ran at 7.6-9.8 GB/s, with 16 at 33-36 GB/s. A group
// that holds part of a row (rows split between threads) reads upwards.
constexpr int kDescendingBlockBytes = 128;
template <class S>
constexpr int descending_block() {
  return kDescendingBlockBytes / int(sizeof(S));
}
template <int kBlock, class F>
inline void for_lane_blocks(int n, bool descending, F&& f) {
  if (!descending) {
    f(0, n);
    return;
  }
  for (int l1 = n; l1 > 0; l1 -= kBlock) f(std::max(0, l1 - kBlock), l1);
}

// Whether channel-inner groups visit their lanes in descending blocks: whole rows walked
// downwards in memory.
template <class P>
bool descending_rows(const P& p, const Layout& lay) {
  return lay.groups_per_batch == 1 && p.time_descends();
}

// peel_row >= 0: step k1 - 1 ends a segment (or the sequence) and runs through step_last
// with that h0 row (kSpecialLast policies only).
template <class P, class Acc>
void channel_run(const P& p, const typename P::Lane& lane, int n, bool descending, int64_t k0,
                 int64_t k1, int64_t peel_row, Acc* s) {
  const bool peel = P::kSpecialLast && peel_row >= 0 && k1 > k0;
  const int64_t end = peel ? k1 - 1 : k1;
  if (end > k0) p.channel_run(lane, n, descending, k0, end, s);
  if (peel)
    for (int l = 0; l < n; ++l) s[l] = p.step_last(lane, end, l, peel_row, s[l]);
}

// ---- time-inner loops ----------------------------------------------------------------------

// Chains of a time-inner block: lane l's range [k0, k1) is cut into `parts` sub-ranges of
// `span` steps (the last may be shorter); chain index = l * parts + j.
struct Chains {
  int parts = 1;
  int64_t span = 0;
};

inline Chains make_chains(int lanes, int chains, int64_t k0, int64_t k1) {
  Chains ch;
  const int64_t n = k1 - k0;
  ch.parts = std::max(1, (chains + lanes - 1) / lanes);
  if (n < 64 * ch.parts) ch.parts = 1;  // too short to be worth splitting
  ch.span = (n + ch.parts - 1) / ch.parts;
  ch.parts = static_cast<int>(n == 0 ? 1 : (n + ch.span - 1) / ch.span);
  return ch;
}

// Summaries of every chain (sum[l * parts + j]), all chains advanced together for ILP.
template <class P, class Acc>
void time_chain_summaries(const P& p, const Group<P>& grp, int64_t k0, int64_t k1,
                          const Chains& ch, Summary<map_t<P>, Acc>* sum) {
  const int n = grp.count * ch.parts;
  typename P::Lane chain[kChains * kTimeLanes] = {};
  map_t<P> A[kChains * kTimeLanes];
  Acc B[kChains * kTimeLanes];
  const int64_t last_len = k1 - (k0 + (ch.parts - 1) * ch.span);  // shortest chain
  for (int c = 0; c < n; ++c)
    chain[c] = p.advance(grp.lanes[c / ch.parts], k0 + (c % ch.parts) * ch.span);
  p.chains_aggregate(chain, n, last_len, A, B);
  for (int c = 0; c < n; ++c) sum[c] = {A[c], B[c]};
  if (ch.parts > 1 && ch.span > last_len) {
    // The longer chains (all but each lane's last) have span - last_len more steps.
    typename P::Lane rest[kChains * kTimeLanes] = {};
    int idx[kChains * kTimeLanes], m = 0;
    for (int c = 0; c < n; ++c)
      if (c % ch.parts != ch.parts - 1) {
        rest[m] = p.advance(chain[c], last_len);
        idx[m++] = c;
      }
    p.chains_aggregate(rest, m, ch.span - last_len, A, B);
    for (int i = 0; i < m; ++i)
      sum[idx[i]] = compose(Summary<map_t<P>, Acc>{A[i], B[i]}, sum[idx[i]]);
  }
}

// Block summary per lane from its chain summaries.
template <class Map, class Acc>
void fold_chains(int lanes, const Chains& ch, const Summary<Map, Acc>* sum, Map* A, Acc* B) {
  for (int l = 0; l < lanes; ++l) {
    Summary<Map, Acc> acc = sum[l * ch.parts];
    for (int j = 1; j < ch.parts; ++j) acc = compose(sum[l * ch.parts + j], acc);
    A[l] = acc.A;
    B[l] = acc.B;
  }
}

// Runs [k0, k1) of every lane of the group from states s (updated to the final states).
// `sum` holds the chain summaries when parts > 1 (from time_chain_summaries).
template <class P, class Acc>
void time_run(const P& p, const Group<P>& grp, int64_t k0, int64_t k1, int64_t peel_row,
              const Chains& ch, const Summary<map_t<P>, Acc>* sum, Acc* s) {
  const int n = grp.count * ch.parts;
  Acc state[kChains * kTimeLanes];
  typename P::Lane chain[kChains * kTimeLanes] = {};
  for (int l = 0; l < grp.count; ++l) {
    Acc entry = s[l];
    for (int j = 0; j < ch.parts; ++j) {
      const int c = l * ch.parts + j;
      state[c] = entry;
      chain[c] = p.advance(grp.lanes[l], k0 + j * ch.span);
      if (j + 1 < ch.parts) entry = sum[c].A * entry + sum[c].B;
    }
  }
  const bool peel = P::kSpecialLast && peel_row >= 0 && k1 > k0;
  // Only the last chain of each lane reaches k1; peel its final step when required.
  const int64_t last_len = k1 - (k0 + (ch.parts - 1) * ch.span) - (peel ? 1 : 0);
  p.chains_run(chain, n, last_len, state);
  if (ch.parts > 1 && ch.span > last_len) {
    typename P::Lane rest[kChains * kTimeLanes] = {};
    Acc rest_state[kChains * kTimeLanes];
    int idx[kChains * kTimeLanes], m = 0;
    for (int c = 0; c < n; ++c)
      if (c % ch.parts != ch.parts - 1) {
        rest[m] = p.advance(chain[c], last_len);
        rest_state[m] = state[c];
        idx[m++] = c;
      }
    p.chains_run(rest, m, ch.span - last_len, rest_state);
    for (int i = 0; i < m; ++i) state[idx[i]] = rest_state[i];
  }
  for (int l = 0; l < grp.count; ++l) {
    const int c = l * ch.parts + ch.parts - 1;
    if (peel) state[c] = p.step_last(grp.lanes[l], k1 - 1, 0, peel_row, state[c]);
    s[l] = state[c];
  }
}

// ---- per-group operations in either mode ---------------------------------------------------

// Summary of [k0, k1) per lane, streaming the inputs into cache. Leaves chain summaries in
// `chain_sum` for a following run over the same range (time-inner mode).
template <class P, class Acc>
void group_aggregate(const P& p, const Layout& lay, const Group<P>& grp, int64_t k0, int64_t k1,
                     map_t<P>* A, Acc* B, Summary<map_t<P>, Acc>* chain_sum, Chains* chains) {
  if (lay.contiguous) {
    p.contig_aggregate(grp.lanes[0], k0, k1, A[0], B[0]);
    return;
  }
  if (lay.channel_inner) {
    p.channel_aggregate(grp.lanes[0], grp.count, descending_rows(p, lay), k0, k1, A, B);
    return;
  }
  *chains = make_chains(grp.count, lay.chains, k0, k1);
  time_chain_summaries(p, grp, k0, k1, *chains, chain_sum);
  fold_chains(grp.count, *chains, chain_sum, A, B);
}

// Scan of [k0, k1) from states s. `chains`/`chain_sum` from group_aggregate over the same
// range, or nullptr to compute them here.
// peel_row as in channel_run.
template <class P, class Acc>
void group_run(const P& p, const Layout& lay, const Group<P>& grp, int64_t k0, int64_t k1,
               int64_t peel_row, Acc* s, const Summary<map_t<P>, Acc>* chain_sum,
               const Chains* chains) {
  if (lay.contiguous) {
    const bool peel = P::kSpecialLast && peel_row >= 0 && k1 > k0;
    const int64_t end = peel ? k1 - 1 : k1;
    if (end > k0) p.contig_run(grp.lanes[0], k0, end, s[0]);
    if (peel) s[0] = p.step_last(grp.lanes[0], end, 0, peel_row, s[0]);
    return;
  }
  if (lay.channel_inner) {
    channel_run(p, grp.lanes[0], grp.count, descending_rows(p, lay), k0, k1, peel_row, s);
    return;
  }
  if (chains != nullptr) {
    time_run(p, grp, k0, k1, peel_row, *chains, chain_sum, s);
    return;
  }
  // Untiled time-inner: cache-sized blocks, each summarized (from memory) then run (from cache).
  Summary<map_t<P>, Acc> sum[kChains * kTimeLanes];
  const int64_t block =
      std::max<int64_t>(512, kBlockBytes / (grp.count * input_bytes<P>()));
  for (int64_t b0 = k0; b0 < k1; b0 += block) {
    const int64_t b1 = std::min(k1, b0 + block);
    const Chains ch = make_chains(grp.count, lay.chains, b0, b1);
    if (ch.parts > 1) time_chain_summaries(p, grp, b0, b1, ch, sum);
    time_run(p, grp, b0, b1, b1 == k1 ? peel_row : -1, ch, sum, s);
  }
}

// ---- segments: ranges cut at the segment starts (scan_segments.h) -------------------------

// Runs [k0, k1) of a group from states s. Without segments: group_run, peeling the sequence's
// last step. With segments: one group_run per piece between starts and ends; at a start the
// segment's initial state is loaded, at an end its final state is stored (and, for
// kSpecialLast, the step peeled with the segment's h0 row). chain_sum / chains (from
// group_aggregate over the same [k0, k1)) are used only when no segment starts inside.
template <class P, class Acc>
void segmented_run(const P& p, const Layout& lay, const Group<P>& grp, const StepSegments& seg,
                   int64_t k0, int64_t k1, Acc* s, const Summary<map_t<P>, Acc>* chain_sum,
                   const Chains* chains) {
  if (!seg.on) {
    group_run<P, Acc>(p, lay, grp, k0, k1, k1 == lay.time ? 0 : -1, s, chain_sum, chains);
    return;
  }
  size_t i = seg.holding(k0);
  for (int64_t k = k0; k < k1; ++i) {
    const StepSegment& sg = seg.list[i];
    if (sg.k0 == k) load_segment_initial(p, lay, grp, sg.row, s);
    const int64_t e = std::min(k1, sg.k1);
    const bool whole = k == k0 && e == k1;
    group_run<P, Acc>(p, lay, grp, k, e, e == sg.k1 ? sg.row : -1, s,
                      whole ? chain_sum : nullptr, whole ? chains : nullptr);
    if (e == sg.k1) store_segment_final(p, lay, grp, sg.row, s);
    k = e;
  }
}

// Summary of [k0, k1) as group_aggregate. With a segment start in the range, only the steps
// from the last start r are read, and the summary is (0, A_[r,k1) * init + B_[r,k1)), init being
// that segment's initial state: it no longer depends on the state before the range. Returns
// whether the range holds a start (its summary is then also its inclusive state).
template <class P, class Acc>
bool segmented_aggregate(const P& p, const Layout& lay, const Group<P>& grp,
                         const StepSegments& seg, int64_t k0, int64_t k1, map_t<P>* A, Acc* B,
                         Summary<map_t<P>, Acc>* chain_sum, Chains* chains) {
  const StepSegment* start = seg.on ? seg.last_start(k0, k1) : nullptr;
  if (start == nullptr) {
    group_aggregate(p, lay, grp, k0, k1, A, B, chain_sum, chains);
    return false;
  }
  group_aggregate(p, lay, grp, start->k0, k1, A, B, chain_sum, chains);
  for (int l = 0; l < grp.count; ++l) {
    B[l] = A[l] * p.initial(start->row, lane_channel(lay, grp, l)) + B[l];
    A[l] = acc_zero<map_t<P>>();
  }
  return true;
}

// ---- scheduling ----------------------------------------------------------------------------

inline void spin_wait() { std::this_thread::yield(); }

// Steps of one look-back tile: about kTileBytes of input across the group's lanes.
template <class P>
int64_t tile_steps(const Layout& lay) {
  const int64_t step_bytes = int64_t(lay.max_lanes) * input_bytes<P>();
  return std::max<int64_t>(16, kTileBytes / step_bytes);
}

// Time is cut into tiles only when there are too few groups to keep every thread busy:
// fewer than one per thread for channel groups (make_layout already sized them for the
// thread count; tiles of rows several KiB wide stream worse than one wide group per thread),
// fewer than two per thread otherwise (so that uneven counts still balance).
inline bool wants_time_tiles(const Layout& lay, int threads) {
  const int64_t enough = lay.channel_inner ? threads : 2 * int64_t(threads);
  return threads > 1 && lay.groups < enough;
}

// Runs the scan described by policy p over all groups and steps with up to `threads` workers.
// chained: a tile waits for its predecessor's inclusive prefix instead of composing
// aggregates of those still running, so every prefix is composed in one fixed order and the
// results are bitwise identical run to run (ScanForwardParams::deterministic).
// seg: packed sequences (batch 1), or off.
template <class P>
void run_scan(const P& p, int64_t batch, int64_t time, int64_t channels, int threads,
              bool chained = false, const StepSegments& seg = StepSegments{}) {
  using Acc = typename P::Acc;
  using Map = map_t<P>;
  threads = std::max(1, threads);
  const Layout lay = make_layout(p, batch, time, channels, threads);
  if (lay.groups == 0) return;
  const int64_t tile = tile_steps<P>(lay);
  const int64_t tiles = (time + tile - 1) / tile;
  const bool tiled = wants_time_tiles(lay, threads) && tiles >= 2;

  if (!tiled) {
    std::atomic<int64_t> next{0};
    const int workers = static_cast<int>(std::min<int64_t>(threads, lay.groups));
    run_on_workers(workers, [&](int) {
      std::vector<Acc> state(lay.max_lanes);
      Acc* s = state.data();
      for (int64_t g; (g = next.fetch_add(1)) < lay.groups;) {
        const Group<P> grp = make_group(p, lay, g);
        if (!seg.on) load_initial(p, lay, grp, s);
        segmented_run<P, Acc>(p, lay, grp, seg, 0, time, s, nullptr, nullptr);
        if (!seg.on) store_final(p, lay, grp, s);
      }
    });
    return;
  }

  // Tiled with decoupled look-back. Item i = tile * groups + group, claimed in order, so a
  // tile's predecessors are always claimed by running workers: no deadlock.
  enum : int { kEmpty = 0, kAggregate = 1, kInclusive = 2 };
  const int64_t items = tiles * lay.groups;
  const int L = lay.max_lanes;
  std::vector<std::atomic<int>> flag(items);
  for (auto& f : flag) f.store(kEmpty, std::memory_order_relaxed);
  std::vector<Map> aggA(items * L);
  std::vector<Acc> aggB(items * L), incl(items * L);
  std::atomic<int64_t> next{0};
  const int workers = static_cast<int>(std::min<int64_t>(threads, items));
  // A one-pass run: channel-inner and contiguous groups scan a tile in one pass (time-inner
  // groups summarize their chains inside the run).
  const bool one_pass_run = lay.channel_inner || lay.contiguous;
  run_on_workers(workers, [&](int) {
    // Per-lane state, summary and look-back prefix.
    std::vector<Acc> lanes(3 * int64_t(L));
    std::vector<Map> maps(2 * int64_t(L));
    Acc *s = lanes.data(), *B = s + L, *accB = B + L;
    Map *A = maps.data(), *accA = A + L;
    Summary<Map, Acc> chain_sum[kChains * kTimeLanes];
    Chains chains;
    // The state entering tile t of group g into s, composed from the predecessors' published
    // summaries (nearest first) back to one whose inclusive state is known. With wait, spins
    // on a predecessor that has published nothing yet; without, gives up there (false).
    auto look_back = [&](int64_t t, int64_t g, int n, bool wait) {
      for (int l = 0; l < n; ++l) {
        accA[l] = acc_one<Map>();
        accB[l] = acc_zero<Acc>();
      }
      for (int64_t j = t - 1;; --j) {
        const int64_t prev = j * lay.groups + g;
        int f;
        while ((f = flag[prev].load(std::memory_order_acquire)) == kEmpty) {
          if (!wait) return false;
          spin_wait();
        }
        if (f == kInclusive) {
          for (int l = 0; l < n; ++l) s[l] = accA[l] * incl[prev * L + l] + accB[l];
          return true;
        }
        for (int l = 0; l < n; ++l) {
          const Summary<Map, Acc> c =
              compose(Summary<Map, Acc>{accA[l], accB[l]},
                      Summary<Map, Acc>{aggA[prev * L + l], aggB[prev * L + l]});
          accA[l] = c.A;
          accB[l] = c.B;
        }
      }
    };
    for (int64_t item; (item = next.fetch_add(1)) < items;) {
      const int64_t t = item / lay.groups, g = item % lay.groups;
      const int64_t k0 = t * tile, k1 = std::min(time, k0 + tile);
      const Group<P> grp = make_group(p, lay, g);
      const int n = grp.count;
      Acc* my_incl = &incl[item * L];
      // Tile 0 starts from the initial state. A later tile whose entering state can already be
      // composed from published summaries runs straight from it, without a summary pass of its
      // own (one pass over the tile instead of two), and publishes its final state: with two
      // threads, while one thread runs a tile the other summarizes the next and can resolve it
      // as soon as that run ends. The chained (deterministic) mode keeps one composition order
      // whatever the timing, so it always summarizes.
      // A tile that starts a segment needs no entering state: it runs directly too (in either
      // mode: its result does not depend on timing).
      const bool direct = t == 0 || (seg.on && seg.starts_at(k0)) ||
                          (!chained && one_pass_run && look_back(t, g, n, /*wait=*/false));
      if (direct) {
        if (t == 0 && !seg.on) load_initial(p, lay, grp, s);
        segmented_run<P, Acc>(p, lay, grp, seg, k0, k1, s, nullptr, nullptr);
        std::copy(s, s + n, my_incl);
        flag[item].store(kInclusive, std::memory_order_release);
      } else {
        // A tile with a segment start inside knows its inclusive state from its summary alone
        // (A = 0) and publishes it at once; it still needs the entering state for the steps
        // before that start.
        const bool cut =
            segmented_aggregate(p, lay, grp, seg, k0, k1, A, B, chain_sum, &chains);
        if (cut) {
          std::copy(B, B + n, my_incl);
          flag[item].store(kInclusive, std::memory_order_release);
        } else {
          std::copy(A, A + n, &aggA[item * L]);
          std::copy(B, B + n, &aggB[item * L]);
          flag[item].store(kAggregate, std::memory_order_release);
        }
        if (chained) {
          const int64_t prev = (t - 1) * lay.groups + g;
          while (flag[prev].load(std::memory_order_acquire) != kInclusive) spin_wait();
          std::copy(&incl[prev * L], &incl[prev * L] + n, s);
        } else {
          look_back(t, g, n, /*wait=*/true);
        }
        if (!cut) {
          for (int l = 0; l < n; ++l) my_incl[l] = A[l] * s[l] + B[l];
          flag[item].store(kInclusive, std::memory_order_release);
        }
        segmented_run<P, Acc>(p, lay, grp, seg, k0, k1, s, chain_sum,
                              one_pass_run ? nullptr : &chains);
      }
      if (t == tiles - 1 && !seg.on) store_final(p, lay, grp, s);
    }
  });
}

// Summary (A, B) of all steps per sequence; calls out(batch, channel, A, B).
template <class P, class Out>
void run_summary(const P& p, int64_t batch, int64_t time, int64_t channels, int threads,
                 const Out& out) {
  using Acc = typename P::Acc;
  using Map = map_t<P>;
  threads = std::max(1, threads);
  const Layout lay = make_layout(p, batch, time, channels, threads);
  if (lay.groups == 0) return;
  const int64_t tile = tile_steps<P>(lay);
  int64_t tiles = std::max<int64_t>(1, (time + tile - 1) / tile);
  if (!wants_time_tiles(lay, threads)) tiles = 1;
  const int64_t span = tiles == 1 ? time : tile;
  const int64_t items = tiles * lay.groups;
  const int L = lay.max_lanes;
  std::vector<Map> aggA(items * L);
  std::vector<Acc> aggB(items * L);
  std::atomic<int64_t> next{0};
  run_on_workers(static_cast<int>(std::min<int64_t>(threads, items)), [&](int) {
    Summary<Map, Acc> chain_sum[kChains * kTimeLanes];
    Chains chains;
    for (int64_t item; (item = next.fetch_add(1)) < items;) {
      const int64_t t = item / lay.groups, g = item % lay.groups;
      const int64_t k0 = std::min(time, t * span), k1 = std::min(time, k0 + span);
      const Group<P> grp = make_group(p, lay, g);
      group_aggregate(p, lay, grp, k0, k1, &aggA[item * L], &aggB[item * L], chain_sum, &chains);
    }
  });
  for (int64_t g = 0; g < lay.groups; ++g) {
    const Group<P> grp = make_group(p, lay, g);
    for (int l = 0; l < grp.count; ++l) {
      Summary<Map, Acc> acc{acc_one<Map>(), acc_zero<Acc>()};
      for (int64_t t = 0; t < tiles; ++t) {
        const int64_t item = t * lay.groups + g;
        acc = compose(Summary<Map, Acc>{aggA[item * L + l], aggB[item * L + l]}, acc);
      }
      if (lay.channel_inner)
        out(grp.batch[0], grp.channel[0] + l, acc.A, acc.B);
      else
        out(grp.batch[l], grp.channel[l], acc.A, acc.B);
    }
  }
}

// The whole kernel for a policy template: dtype dispatch, the T = 0 case (final state =
// initial state), then the engine.
// With segments, each empty segment's final state is its initial one, written here; the
// others are finished by the engine's runs.
template <template <class> class Policy, class Params>
void run_policy(const Params& params, const char* name) {
  dispatch_scalar_kind(params.dtype, name, [&](auto tag) {
    using P = Policy<decltype(tag)>;
    const P policy(params);
    const ScanShape& n = params.shape;
    const ScanSegments& sg = params.segments;
    if (sg.bounds != nullptr) {
      for (int64_t i = 0; i < sg.count; ++i)
        if (sg.bounds[i + 1] <= sg.bounds[i])
          for (int64_t c = 0; c < n.channels; ++c) policy.finish(i, c, policy.initial(i, c));
      if (n.time == 0) return;
      const StepSegments seg = make_step_segments(sg, n.time, P::kReversedSteps);
      run_scan(policy, n.batch, n.time, n.channels, params.num_threads, params.deterministic,
               seg);
      return;
    }
    if (n.time == 0) {
      for (int64_t bi = 0; bi < n.batch; ++bi)
        for (int64_t c = 0; c < n.channels; ++c) policy.finish(bi, c, policy.initial(bi, c));
      return;
    }
    run_scan(policy, n.batch, n.time, n.channels, params.num_threads, params.deterministic);
  });
}

}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET::engine
