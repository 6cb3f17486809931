// Scheduling of the fused chunk kernels (chunk_gla.cpp, chunk_delta_rule.cpp) on the CPU
// workers: over (batch, head) pairs, and over ranges of one pair's chunks when there are fewer
// pairs than threads (B = 1 with one or two heads is common for long sequences, and one pair
// per worker would leave the other workers idle).
//
// Each pair's chunks are cut into R contiguous ranges, R = threads / pairs (at most one range
// per chunk; R = 1, the plain one pass per pair, when pairs >= threads). The state after a range
// is affine in the state x entering it, M x + E (GLA: M diagonal, the product of the decays;
// gated DeltaNet: M the product of the chunks' K x K transitions), the two-level scan of chunk
// maps that seqpar.sp uses across ranks, here across workers:
//   1. in parallel, each range but the last computes its map (M, E) chunk by chunk (the first
//      range's without M: chunk 0 starts its run, see packed sequences below);
//   2. on the calling thread, the state entering each range, in order (R - 1 small products);
//   3. in parallel, each range runs its chunks from its entering state, exactly as one pass.
// The backward mirrors it: the gradient of the state leaving a range is carried backwards
// through the ranges' adjoint maps dx = M^T dy + F (F: the gradient reached from the range's
// own outputs), phase 1 computing (M^T, F) for each range but the first.
// Memory: one map and one entering state per range (K x K + 2 K x V values), nothing per chunk.
//
// Packed sequences: a segment that starts inside a range restarts the state, so the map of the
// range is then M = 0 (what enters the range no longer matters) and E carries the segment's own
// initial state (backward: the segment's final-state gradient); the ranges cut across segment
// boundaries freely.
//
// A recurrence provides Run = struct with, for its In (storage) and T (compute) types:
//   Tiles                 per-worker scratch, Tiles(chunk, K, V, backward), with K x V S and dS
//   kDiagonalMap          whether M is diagonal (K values) or K x K
//   forward(p, b, h, step, x)       one chunk from the state x.S: writes o, leaves x.S after it
//   forward_map(p, b, h, step, m, x)  advances the map m (M when live, and E) through one chunk
//   backward(p, b, h, step, x)      one chunk, x.S its saved entering state: writes the inputs'
//                                   gradients, turns x.dS (after the chunk) into the one before
//   backward_map(p, b, h, step, m, x) the adjoint map m (M^T when live, and F) back one chunk
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "chunk_tiles.h"
#include "thread_pool.h"

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET {

// The map of a range of chunks: the state after it is M x + E for the state x entering it
// (backward: the gradient before it is M^T dy + F for the gradient dy after it, M^T kept in M).
// live == false once a segment boundary in the range cut x off (M = 0).
template <class T>
struct RangeMap {
  bool live = true;
  std::vector<T> M, E;
};

// Ranges per (batch, head) pair: threads / pairs, at least 1 and at most one per chunk.
inline int64_t chunk_range_count(const MatrixChunkShape& s, int num_threads) {
  const int64_t pairs = s.batch * s.heads;
  if (pairs == 0 || pairs >= num_threads) return 1;
  return std::max<int64_t>(1, std::min<int64_t>(num_threads / pairs, s.chunks()));
}

// fn(task, worker) for task in [0, count) on up to num_threads workers, claimed in order.
template <class Fn>
inline void for_each_task(int64_t count, int num_threads, const Fn& fn) {
  if (count <= 0) return;
  const int workers = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads, count)));
  std::atomic<int64_t> next{0};
  run_on_workers(workers, [&](int worker) {
    for (int64_t t = next.fetch_add(1); t < count; t = next.fetch_add(1)) fn(t, worker);
  });
}

// One Tiles per worker, made on first use.
template <class Tiles>
class WorkerTiles {
 public:
  WorkerTiles(const MatrixChunkShape& s, int num_threads, bool backward)
      : s_(s), backward_(backward), tiles_(static_cast<size_t>(std::max(1, num_threads))) {}
  Tiles& operator[](int worker) {
    auto& t = tiles_[static_cast<size_t>(worker)];
    if (!t) t = std::make_unique<Tiles>(s_.chunk, s_.key, s_.value, backward_);
    return *t;
  }

 private:
  const MatrixChunkShape& s_;
  bool backward_;
  std::vector<std::unique_ptr<Tiles>> tiles_;
};

// The ranges of one pair's chunks: range r is [first(r), first(r + 1)).
struct ChunkRanges {
  int64_t chunks = 0, count = 1;
  int64_t first(int64_t r) const { return chunks * r / count; }
};

// m = the identity map (M = I, E = 0) before the range's first chunk.
template <class T>
inline void start_map(RangeMap<T>& m, bool diagonal, int64_t K, int64_t V) {
  m.live = true;
  m.M.assign(static_cast<size_t>(diagonal ? K : K * K), T(0));
  for (int64_t i = 0; i < K; ++i) m.M[static_cast<size_t>(diagonal ? i : i * K + i)] = T(1);
  m.E.assign(static_cast<size_t>(K * V), T(0));
}
// At a segment boundary the map restarts: M = 0 and E = the given state (zeros when absent).
template <class T>
inline void restart_map(RangeMap<T>& m, const T* state) {
  m.live = false;
  load_state(state, static_cast<int64_t>(m.E.size()), m.E);
}
// out = M x + E (K x V).
template <class T>
inline void apply_map(const RangeMap<T>& m, bool diagonal, int64_t K, int64_t V,
                      const Gemm<T>& gemm, const T* x, T* out) {
  std::copy(m.E.begin(), m.E.end(), out);
  if (!m.live) return;
  if (diagonal) {
    for (int64_t i = 0; i < K; ++i)
      for (int64_t j = 0; j < V; ++j) out[i * V + j] += m.M[static_cast<size_t>(i)] * x[i * V + j];
  } else {
    gemm(false, false, K, V, K, T(1), m.M.data(), K, x, V, T(1), out, V);
  }
}

template <class Run>
void run_chunks(const MatrixChunkForwardParams& p) {
  using T = typename Run::T;
  const MatrixChunkShape& s = p.shape;
  const int64_t heads = s.heads, pairs = s.batch * heads, K = s.key, V = s.value, KV = K * V;
  const int64_t room = s.chunk_room();
  const ChunkRanges ranges{s.chunks(), chunk_range_count(s, p.num_threads)};
  const int64_t R = ranges.count;
  WorkerTiles<typename Run::Tiles> tiles(s, p.num_threads, false);
  // Phases 1 and 2: the state entering each range (only with R > 1).
  std::vector<T> entering;
  if (R > 1) {
    std::vector<RangeMap<T>> maps(static_cast<size_t>(pairs * (R - 1)));
    for_each_task(pairs * (R - 1), p.num_threads, [&](int64_t task, int worker) {
      const int64_t pair = task / (R - 1), r = task % (R - 1), b = pair / heads, h = pair % heads;
      RangeMap<T>& m = maps[static_cast<size_t>(task)];
      start_map(m, Run::kDiagonalMap, K, V);
      auto& x = tiles[worker];
      for_each_chunk(s, b, ranges.first(r), ranges.first(r + 1), false, [&](const ChunkStep& st) {
        if (st.first) restart_map(m, state_ptr<T>(p.initial_state, st.row, h));
        Run::forward_map(p, b, h, st, m, x);
      });
    });
    // Range 0 starts at chunk 0, the first of its segment, which loads its own initial state.
    entering.assign(static_cast<size_t>(pairs * R * KV), T(0));
    const Gemm<T> gemm{gemm_of<T>(p.gemm)};
    for (int64_t pair = 0; pair < pairs; ++pair)
      for (int64_t r = 1; r < R; ++r)
        apply_map(maps[static_cast<size_t>(pair * (R - 1) + r - 1)], Run::kDiagonalMap, K, V, gemm,
                  entering.data() + (pair * R + r - 1) * KV, entering.data() + (pair * R + r) * KV);
  }
  // Phase 3: every range from its entering state.
  for_each_task(pairs * R, p.num_threads, [&](int64_t task, int worker) {
    const int64_t pair = task / R, r = task % R, b = pair / heads, h = pair % heads;
    auto& x = tiles[worker];
    load_state(R > 1 ? entering.data() + task * KV : nullptr, KV, x.S);
    for_each_chunk(s, b, ranges.first(r), ranges.first(r + 1), false, [&](const ChunkStep& st) {
      if (st.first) load_state(state_ptr<T>(p.initial_state, st.row, h), KV, x.S);
      if (p.chunk_states != nullptr)
        std::copy_n(x.S.data(), KV, static_cast<T*>(p.chunk_states) + (pair * room + st.n) * KV);
      Run::forward(p, b, h, st, x);
      if (st.last)
        if (T* out = state_ptr<T>(p.final_state, st.row, h)) std::copy_n(x.S.data(), KV, out);
    });
    if (r == R - 1) {
      for_each_empty_segment(s, b, [&](int64_t row) {
        if (T* out = state_ptr<T>(p.final_state, row, h)) {
          const T* in = state_ptr<T>(p.initial_state, row, h);
          if (in != nullptr) std::copy_n(in, KV, out); else std::fill(out, out + KV, T(0));
        }
      });
      clear_spare_chunk_states<T>(p, b, h);
    }
  });
}

template <class Run>
void run_chunks(const MatrixChunkBackwardParams& p) {
  using T = typename Run::T;
  const MatrixChunkShape& s = p.shape;
  const int64_t heads = s.heads, pairs = s.batch * heads, K = s.key, V = s.value, KV = K * V;
  const int64_t room = s.chunk_room();
  const ChunkRanges ranges{s.chunks(), chunk_range_count(s, p.num_threads)};
  const int64_t R = ranges.count;
  WorkerTiles<typename Run::Tiles> tiles(s, p.num_threads, true);
  // Phases 1 and 2: the gradient of the state leaving each range (only with R > 1).
  std::vector<T> leaving;
  if (R > 1) {
    std::vector<RangeMap<T>> maps(static_cast<size_t>(pairs * (R - 1)));  // of ranges 1 .. R-1
    for_each_task(pairs * (R - 1), p.num_threads, [&](int64_t task, int worker) {
      const int64_t pair = task / (R - 1), r = 1 + task % (R - 1);
      const int64_t b = pair / heads, h = pair % heads;
      RangeMap<T>& m = maps[static_cast<size_t>(task)];
      start_map(m, Run::kDiagonalMap, K, V);
      auto& x = tiles[worker];
      for_each_chunk(s, b, ranges.first(r), ranges.first(r + 1), true, [&](const ChunkStep& st) {
        if (st.last) restart_map(m, state_ptr<T>(p.grad_final_state, st.row, h));
        Run::backward_map(p, b, h, st, m, x);
      });
    });
    // The last range ends with the run's last chunk, which loads its own final-state gradient.
    leaving.assign(static_cast<size_t>(pairs * R * KV), T(0));
    const Gemm<T> gemm{gemm_of<T>(p.gemm)};
    for (int64_t pair = 0; pair < pairs; ++pair)
      for (int64_t r = R - 2; r >= 0; --r)
        apply_map(maps[static_cast<size_t>(pair * (R - 1) + r)], Run::kDiagonalMap, K, V, gemm,
                  leaving.data() + (pair * R + r + 1) * KV, leaving.data() + (pair * R + r) * KV);
  }
  // Phase 3: every range backwards from the gradient of the state leaving it.
  for_each_task(pairs * R, p.num_threads, [&](int64_t task, int worker) {
    const int64_t pair = task / R, r = task % R, b = pair / heads, h = pair % heads;
    auto& x = tiles[worker];
    load_state(R > 1 ? leaving.data() + task * KV : nullptr, KV, x.dS);
    for_each_chunk(s, b, ranges.first(r), ranges.first(r + 1), true, [&](const ChunkStep& st) {
      if (st.last) load_state(state_ptr<T>(p.grad_final_state, st.row, h), KV, x.dS);
      const T* saved = static_cast<const T*>(p.chunk_states) + (pair * room + st.n) * KV;
      std::copy_n(saved, KV, x.S.data());
      Run::backward(p, b, h, st, x);
      if (st.first)
        if (T* out = state_ptr<T>(p.grad_initial_state, st.row, h))
          std::copy_n(x.dS.data(), KV, out);
    });
    if (r == 0) {
      for_each_empty_segment(s, b, [&](int64_t row) {
        if (T* out = state_ptr<T>(p.grad_initial_state, row, h)) {
          const T* in = state_ptr<T>(p.grad_final_state, row, h);
          if (in != nullptr) std::copy_n(in, KV, out); else std::fill(out, out + KV, T(0));
        }
      });
    }
  });
}

// The kernel entry point `name` of a recurrence whose Run<In, T> is described above.
#define SEQPAR_CHUNK_ENTRY(name, Run, Params)                     \
  void name(const Params& p) {                                    \
    input_type_switch(p.dtype, #name, [&](auto in) {              \
      using In = decltype(in);                                    \
      run_chunks<Run<In, typename ComputeOf<In>::type>>(p);       \
    });                                                           \
  }

}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET
