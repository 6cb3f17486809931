// CUDA kernels of the 2x2 block scan (cuda_block_scan.h, block_scan_params.h):
// h_t = A_t h_{t-1} + b_t per (batch, channel) sequence, its adjoint and its summary.
//
// Why this shape: a 2x2 step is an affine map of the 2-vector state, and affine maps compose,
// so a sequence can be cut into chunks that are summarized independently. Every op is the
// same chunked three-phase scan (chunk lengths: block_scan_chunks.h), one item = one chunk of
// one sequence, items numbered (batch, chunk, channel) with the channel fastest so that the
// threads of a warp read neighbouring channels of the same step:
//   1. maps:   each thread composes its chunk's steps into one affine map (M, E) in the
//              accumulation type (scratch);
//   2. states: one thread per sequence walks the chunk maps in order and stores the state
//              entering every chunk (scratch);
//   3. run:    each thread reruns its chunk from its entering state, writing every step's
//              output (and the final state from the chunk that ends the sequence).
// A sequence that is one chunk (K == 1) runs phase 3 alone, from h0 / grad_h_last.
//
// The forward visits t = 0..T-1 with maps x -> A_t x + b_t. The backward visits
// t = T-1..0 carrying u (u = grad_h_last before the first visited step) with
// maps u -> A_t^T (u + g_t): lam_t = g_t + u, grad_b_t = lam_t, grad_A_t = lam_t h_{t-1}^T,
// u <- A_t^T lam_t, and grad_h0 is the last u. The summary is phase 1 then one composition
// of the chunk maps per sequence. Nothing depends on timing: results are bitwise
// reproducible. Scratch (cudaMallocAsync on the stream) is 64 (float32/float64) or 32
// (16-bit) bytes per item.
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <type_traits>

#include "block_scan_chunks.h"
#include "block_scan_math.cuh"
#include "seqpar/kernels/cuda_block_scan.h"
#include "seqpar/kernels/static_switch.h"

namespace seqpar::kernels::cuda::block {
namespace {

constexpr int kThreads = 256;

// The chunk grid of one call: K chunks of L steps per sequence (the last one shorter).
struct Chunks {
  int64_t batch, time, channels;
  int64_t length, count;
  __device__ __forceinline__ int64_t items() const { return batch * count * channels; }
  __device__ __forceinline__ int64_t item(int64_t b, int64_t k, int64_t c) const {
    return (b * count + k) * channels + c;
  }
};
// Where item i is: batch b, chunk k (steps [t0, t1)), channel c.
struct Item {
  int64_t b, k, c, t0, t1;
};
__device__ __forceinline__ Item item_at(const Chunks& ch, int64_t i) {
  Item it;
  it.c = i % ch.channels;
  const int64_t rest = i / ch.channels;
  it.k = rest % ch.count;
  it.b = rest / ch.count;
  it.t0 = it.k * ch.length;
  it.t1 = it.t0 + ch.length < ch.time ? it.t0 + ch.length : ch.time;
  return it;
}

__device__ __forceinline__ int64_t thread_index() {
  return int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
}

// Element pointers of (batch, time, channel) and (batch, channel) operands.
template <class S>
__device__ __forceinline__ const S* at(const ConstOperand3& o, int64_t b, int64_t t, int64_t c) {
  return static_cast<const S*>(o.data) + b * o.stride.batch + t * o.stride.time + c * o.stride.channel;
}
template <class S>
__device__ __forceinline__ S* at(const Operand3& o, int64_t b, int64_t t, int64_t c) {
  return static_cast<S*>(o.data) + b * o.stride.batch + t * o.stride.time + c * o.stride.channel;
}
template <class S>
__device__ __forceinline__ const S* at(const ConstOperand2& o, int64_t b, int64_t c) {
  return static_cast<const S*>(o.data) + b * o.stride.batch + c * o.stride.channel;
}
template <class S>
__device__ __forceinline__ S* at(const Operand2& o, int64_t b, int64_t c) {
  return static_cast<S*>(o.data) + b * o.stride.batch + c * o.stride.channel;
}
// An optional (batch, channel) 2-vector: zeros when absent.
template <class S>
__device__ __forceinline__ Vec2<typename Traits<S>::Acc> load_or_zero(const ConstOperand2& o, int64_t b,
                                                                       int64_t c) {
  using Acc = typename Traits<S>::Acc;
  return o.data != nullptr ? load_vec(at<S>(o, b, c)) : zero_vec<Acc>();
}

// ---- forward ------------------------------------------------------------------------------

// Phase 1: the map of each chunk, h -> M h + E. `skip` names a chunk whose map is never read
// (the last one of the forward) or -1.
template <class S>
__global__ void __launch_bounds__(kThreads)
    forward_maps_kernel(ConstOperand3 A, ConstOperand3 bv, bool lower, Chunks ch, int64_t skip,
                        Affine2<typename Traits<S>::Acc>* maps) {
  using Acc = typename Traits<S>::Acc;
  const int64_t i = thread_index();
  if (i >= ch.items()) return;
  const Item it = item_at(ch, i);
  if (it.k == skip) return;
  Affine2<Acc> f = identity_map<Acc>();
  for (int64_t t = it.t0; t < it.t1; ++t) {
    const Mat2<Acc> a = load_mat(at<S>(A, it.b, t, it.c), lower);
    const Vec2<Acc> x = load_vec(at<S>(bv, it.b, t, it.c));
    f = {mul(a, f.M), mul(a, f.E) + x};
  }
  maps[i] = f;
}

// Phase 2: the state entering every chunk, from h0.
template <class S>
__global__ void __launch_bounds__(kThreads)
    forward_states_kernel(ConstOperand2 h0, Chunks ch, const Affine2<typename Traits<S>::Acc>* maps,
                          Vec2<typename Traits<S>::Acc>* states) {
  using Acc = typename Traits<S>::Acc;
  const int64_t j = thread_index();
  if (j >= ch.batch * ch.channels) return;
  const int64_t b = j / ch.channels, c = j % ch.channels;
  Vec2<Acc> h = load_or_zero<S>(h0, b, c);
  for (int64_t k = 0; k < ch.count; ++k) {
    const int64_t i = ch.item(b, k, c);
    states[i] = h;
    if (k + 1 < ch.count) h = apply(maps[i], h);
  }
}

// Phase 3: every h_t of a chunk from its entering state (h0 when states == nullptr: one chunk).
template <class S>
__global__ void __launch_bounds__(kThreads)
    forward_run_kernel(BlockScanForwardParams p, Chunks ch, const Vec2<typename Traits<S>::Acc>* states) {
  using Acc = typename Traits<S>::Acc;
  const int64_t i = thread_index();
  if (i >= ch.items()) return;
  const Item it = item_at(ch, i);
  Vec2<Acc> h = states != nullptr ? states[i] : load_or_zero<S>(p.h0, it.b, it.c);
  for (int64_t t = it.t0; t < it.t1; ++t) {
    const Mat2<Acc> a = load_mat(at<S>(p.A, it.b, t, it.c), p.lower_triangular);
    h = mul(a, h) + load_vec(at<S>(p.b, it.b, t, it.c));
    store_vec(at<S>(p.h, it.b, t, it.c), h);
  }
  if (it.k == ch.count - 1 && p.h_last.data != nullptr) store_vec(at<S>(p.h_last, it.b, it.c), h);
}

// ---- backward -----------------------------------------------------------------------------

// Phase 1: the map of each chunk over its steps from last to first, u -> A_t^T (u + g_t).
// The first chunk's map is never read (skip = 0).
template <class S>
__global__ void __launch_bounds__(kThreads)
    backward_maps_kernel(ConstOperand3 A, ConstOperand3 grad_h, bool lower, Chunks ch, int64_t skip,
                         Affine2<typename Traits<S>::Acc>* maps) {
  using Acc = typename Traits<S>::Acc;
  const int64_t i = thread_index();
  if (i >= ch.items()) return;
  const Item it = item_at(ch, i);
  if (it.k == skip) return;
  Affine2<Acc> f = identity_map<Acc>();
  for (int64_t t = it.t1 - 1; t >= it.t0; --t) {
    const Mat2<Acc> a_t = transpose(load_mat(at<S>(A, it.b, t, it.c), lower));
    const Vec2<Acc> e = grad_h.data != nullptr ? f.E + load_vec(at<S>(grad_h, it.b, t, it.c)) : f.E;
    f = {mul(a_t, f.M), mul(a_t, e)};
  }
  maps[i] = f;
}

// Phase 2: the u entering every chunk (its last step's), from grad_h_last, chunks last to first.
template <class S>
__global__ void __launch_bounds__(kThreads)
    backward_states_kernel(ConstOperand2 grad_h_last, Chunks ch,
                           const Affine2<typename Traits<S>::Acc>* maps, Vec2<typename Traits<S>::Acc>* states) {
  using Acc = typename Traits<S>::Acc;
  const int64_t j = thread_index();
  if (j >= ch.batch * ch.channels) return;
  const int64_t b = j / ch.channels, c = j % ch.channels;
  Vec2<Acc> u = load_or_zero<S>(grad_h_last, b, c);
  for (int64_t k = ch.count - 1; k >= 0; --k) {
    const int64_t i = ch.item(b, k, c);
    states[i] = u;
    if (k > 0) u = apply(maps[i], u);
  }
}

// Phase 3: grad_b, grad_A of every step of a chunk from its entering u (grad_h_last when
// states == nullptr: one chunk); the first chunk writes grad_h0.
template <class S>
__global__ void __launch_bounds__(kThreads)
    backward_run_kernel(BlockScanBackwardParams p, Chunks ch, const Vec2<typename Traits<S>::Acc>* states) {
  using Acc = typename Traits<S>::Acc;
  const int64_t i = thread_index();
  if (i >= ch.items()) return;
  const Item it = item_at(ch, i);
  Vec2<Acc> u = states != nullptr ? states[i] : load_or_zero<S>(p.grad_h_last, it.b, it.c);
  for (int64_t t = it.t1 - 1; t >= it.t0; --t) {
    const Vec2<Acc> lam = p.grad_h.data != nullptr ? u + load_vec(at<S>(p.grad_h, it.b, t, it.c)) : u;
    store_vec(at<S>(p.grad_b, it.b, t, it.c), lam);
    const Vec2<Acc> prev = t > 0 ? load_vec(at<S>(p.h, it.b, t - 1, it.c)) : load_or_zero<S>(p.h0, it.b, it.c);
    const Mat2<Acc> grad_a{lam.x0 * prev.x0, p.lower_triangular ? Acc(0) : lam.x0 * prev.x1,
                           lam.x1 * prev.x0, lam.x1 * prev.x1};
    store_mat(at<S>(p.grad_A, it.b, t, it.c), grad_a);
    u = mul(transpose(load_mat(at<S>(p.A, it.b, t, it.c), p.lower_triangular)), lam);
  }
  if (it.k == 0 && p.grad_h0.data != nullptr) store_vec(at<S>(p.grad_h0, it.b, it.c), u);
}

// ---- summary and empty time ranges ---------------------------------------------------------

// The chunk maps of a sequence composed in order into (M, E) (the identity when ch.count == 0).
template <class S>
__global__ void __launch_bounds__(kThreads)
    summary_compose_kernel(Operand2 M, Operand2 E, Chunks ch, const Affine2<typename Traits<S>::Acc>* maps) {
  using Acc = typename Traits<S>::Acc;
  const int64_t j = thread_index();
  if (j >= ch.batch * ch.channels) return;
  const int64_t b = j / ch.channels, c = j % ch.channels;
  Affine2<Acc> f = identity_map<Acc>();
  for (int64_t k = 0; k < ch.count; ++k) f = compose(maps[ch.item(b, k, c)], f);
  store_mat(at<S>(M, b, c), f.M);
  store_vec(at<S>(E, b, c), f.E);
}

// T == 0: out = in (zeros when in is absent); h_last = h0, grad_h0 = grad_h_last.
template <class S>
__global__ void __launch_bounds__(kThreads)
    copy_state_kernel(Operand2 out, ConstOperand2 in, int64_t batch, int64_t channels) {
  const int64_t j = thread_index();
  if (j >= batch * channels) return;
  const int64_t b = j / channels, c = j % channels;
  store_vec(at<S>(out, b, c), load_or_zero<S>(in, b, c));
}

// ---- host side ------------------------------------------------------------------------------

// Launches `kernel` on at least `threads` threads (kThreads per CTA).
template <class... KernelArgs, class... Args>
int launch(void (*kernel)(KernelArgs...), int64_t threads, cudaStream_t stream, const Args&... args) {
  if (threads <= 0) return 0;
  const int64_t blocks = (threads + kThreads - 1) / kThreads;
  if (blocks > int64_t(INT_MAX)) return int(cudaErrorInvalidConfiguration);
#ifdef SEQPAR_HOST_EMULATION  // tests/kernels/cuda/host_emulation runs the kernels on the CPU
  (void)stream;
  emu::launch(unsigned(blocks), kThreads, [&] { kernel(args...); });
#else
  kernel<<<unsigned(blocks), kThreads, 0, stream>>>(args...);
#endif
  return int(cudaGetLastError());
}

// Chunk maps and entering states of every item, one stream-ordered allocation per call.
template <class Acc>
struct Scratch {
  Affine2<Acc>* maps = nullptr;
  Vec2<Acc>* states = nullptr;
  void* base = nullptr;
  int allocate(int64_t items, cudaStream_t stream) {
    const size_t map_bytes = size_t(items) * sizeof(Affine2<Acc>);
    const cudaError_t err = cudaMallocAsync(&base, map_bytes + size_t(items) * sizeof(Vec2<Acc>), stream);
    if (err != cudaSuccess) return int(err);
    maps = static_cast<Affine2<Acc>*>(base);
    states = reinterpret_cast<Vec2<Acc>*>(static_cast<char*>(base) + map_bytes);
    return 0;
  }
  // Releases behind the queued kernels; the first error of the call wins.
  int release(int err, cudaStream_t stream) {
    if (base == nullptr) return err;
    const cudaError_t free_err = cudaFreeAsync(base, stream);
    return err != 0 ? err : int(free_err);
  }
};

bool valid_shape(const ScanShape& n, int64_t chunk) {
  return n.batch >= 0 && n.time >= 0 && n.channels >= 0 && chunk >= 1;
}
Chunks chunks_of(const ScanShape& n, int64_t chunk) {
  return {n.batch, n.time, n.channels, chunk, (n.time + chunk - 1) / chunk};
}

// complex64 has a slot in the element-type switch but is not a block dtype.
struct NotABlockType {};
template <class Fn>
int with_storage(ScalarKind kind, Fn&& fn) {
  return scalar_kind_switch<StorageTypes<float, double, __nv_bfloat16, __half, NotABlockType>>(
      kind,
      [&](auto tag) {
        using S = decltype(tag);
        if constexpr (std::is_same_v<S, NotABlockType>) {
          return int(cudaErrorInvalidValue);
        } else {
          return fn(tag);
        }
      },
      [] { return int(cudaErrorInvalidValue); });
}

template <class S>
int forward(const BlockScanForwardParams& p, cudaStream_t stream, int64_t chunk) {
  using Acc = typename Traits<S>::Acc;
  const ScanShape& n = p.shape;
  const int64_t sequences = n.batch * n.channels;
  if (sequences == 0) return 0;
  if (n.time == 0) {
    if (p.h_last.data == nullptr) return 0;
    return launch(copy_state_kernel<S>, sequences, stream, p.h_last, p.h0, n.batch, n.channels);
  }
  if (p.A.data == nullptr || p.b.data == nullptr || p.h.data == nullptr) return int(cudaErrorInvalidValue);
  const Chunks ch = chunks_of(n, chunk);
  const int64_t items = sequences * ch.count;
  if (ch.count == 1) return launch(forward_run_kernel<S>, items, stream, p, ch, (const Vec2<Acc>*)nullptr);
  Scratch<Acc> s;
  int err = s.allocate(items, stream);
  if (err != 0) return err;
  err = launch(forward_maps_kernel<S>, items, stream, p.A, p.b, p.lower_triangular, ch, ch.count - 1, s.maps);
  if (err == 0) err = launch(forward_states_kernel<S>, sequences, stream, p.h0, ch, (const Affine2<Acc>*)s.maps, s.states);
  if (err == 0) err = launch(forward_run_kernel<S>, items, stream, p, ch, (const Vec2<Acc>*)s.states);
  return s.release(err, stream);
}

template <class S>
int backward(const BlockScanBackwardParams& p, cudaStream_t stream, int64_t chunk) {
  using Acc = typename Traits<S>::Acc;
  const ScanShape& n = p.shape;
  const int64_t sequences = n.batch * n.channels;
  if (sequences == 0) return 0;
  if (n.time == 0) {
    if (p.grad_h0.data == nullptr) return 0;
    return launch(copy_state_kernel<S>, sequences, stream, p.grad_h0, p.grad_h_last, n.batch, n.channels);
  }
  if (p.A.data == nullptr || p.h.data == nullptr || p.grad_A.data == nullptr || p.grad_b.data == nullptr) {
    return int(cudaErrorInvalidValue);
  }
  const Chunks ch = chunks_of(n, chunk);
  const int64_t items = sequences * ch.count;
  if (ch.count == 1) return launch(backward_run_kernel<S>, items, stream, p, ch, (const Vec2<Acc>*)nullptr);
  Scratch<Acc> s;
  int err = s.allocate(items, stream);
  if (err != 0) return err;
  err = launch(backward_maps_kernel<S>, items, stream, p.A, p.grad_h, p.lower_triangular, ch, int64_t(0), s.maps);
  if (err == 0) {
    err = launch(backward_states_kernel<S>, sequences, stream, p.grad_h_last, ch, (const Affine2<Acc>*)s.maps, s.states);
  }
  if (err == 0) err = launch(backward_run_kernel<S>, items, stream, p, ch, (const Vec2<Acc>*)s.states);
  return s.release(err, stream);
}

template <class S>
int summary(const BlockScanSummaryParams& p, cudaStream_t stream, int64_t chunk) {
  using Acc = typename Traits<S>::Acc;
  const ScanShape& n = p.shape;
  const int64_t sequences = n.batch * n.channels;
  if (sequences == 0) return 0;
  if (p.M.data == nullptr || p.E.data == nullptr) return int(cudaErrorInvalidValue);
  const Chunks ch = chunks_of(n, chunk);
  if (n.time == 0) return launch(summary_compose_kernel<S>, sequences, stream, p.M, p.E, ch, (const Affine2<Acc>*)nullptr);
  if (p.A.data == nullptr || p.b.data == nullptr) return int(cudaErrorInvalidValue);
  const int64_t items = sequences * ch.count;
  Scratch<Acc> s;
  int err = s.allocate(items, stream);
  if (err != 0) return err;
  err = launch(forward_maps_kernel<S>, items, stream, p.A, p.b, p.lower_triangular, ch, int64_t(-1), s.maps);
  if (err == 0) err = launch(summary_compose_kernel<S>, sequences, stream, p.M, p.E, ch, (const Affine2<Acc>*)s.maps);
  return s.release(err, stream);
}

int64_t ceil_sqrt(int64_t n) {
  int64_t r = int64_t(std::sqrt(double(n)));
  while (r * r < n) ++r;
  while (r > 1 && (r - 1) * (r - 1) >= n) --r;
  return r;
}

}  // namespace

int64_t chunk_length(int64_t sequences, int64_t time) {
  if (time <= 1) return 1;
  constexpr int64_t kTargetThreads = int64_t(1) << 16;
  int64_t chunks = sequences > 0 ? (kTargetThreads + sequences - 1) / sequences : 1;
  const int64_t root = ceil_sqrt(time);
  if (chunks > root) chunks = root;
  if (chunks < 1) chunks = 1;
  return (time + chunks - 1) / chunks;
}

int forward_chunked(const BlockScanForwardParams& p, void* stream, int64_t chunk) {
  if (!valid_shape(p.shape, chunk)) return int(cudaErrorInvalidValue);
  return with_storage(p.dtype, [&](auto tag) {
    return forward<decltype(tag)>(p, static_cast<cudaStream_t>(stream), chunk);
  });
}
int backward_chunked(const BlockScanBackwardParams& p, void* stream, int64_t chunk) {
  if (!valid_shape(p.shape, chunk)) return int(cudaErrorInvalidValue);
  return with_storage(p.dtype, [&](auto tag) {
    return backward<decltype(tag)>(p, static_cast<cudaStream_t>(stream), chunk);
  });
}
int summary_chunked(const BlockScanSummaryParams& p, void* stream, int64_t chunk) {
  if (!valid_shape(p.shape, chunk)) return int(cudaErrorInvalidValue);
  return with_storage(p.dtype, [&](auto tag) {
    return summary<decltype(tag)>(p, static_cast<cudaStream_t>(stream), chunk);
  });
}

}  // namespace seqpar::kernels::cuda::block

namespace seqpar::kernels::cuda {

int block_scan_forward(const BlockScanForwardParams& params, void* stream) {
  return block::forward_chunked(params, stream,
                                block::chunk_length(params.shape.batch * params.shape.channels, params.shape.time));
}
int block_scan_backward(const BlockScanBackwardParams& params, void* stream) {
  return block::backward_chunked(params, stream,
                                 block::chunk_length(params.shape.batch * params.shape.channels, params.shape.time));
}
int block_scan_summary(const BlockScanSummaryParams& params, void* stream) {
  return block::summary_chunked(params, stream,
                                block::chunk_length(params.shape.batch * params.shape.channels, params.shape.time));
}

}  // namespace seqpar::kernels::cuda
