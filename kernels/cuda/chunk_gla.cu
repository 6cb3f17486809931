// Fused chunk kernels of gated linear attention (GLA) on CUDA, forward and backward
// (matrix_state_params.h; the math in docs/matrix_state.md; the CPU kernels in kernels/cpu/
// chunk_gla.cpp). One CTA per (batch, head, V-tile) walks its chunks (chunk_tiles.cuh).
//
// Per chunk, entered with state S (K x VT), G the running sum of g (64 x K, one decay per key
// channel), E = exp(G), Qh = Q * E (Q scaled), Kb = K * exp(G_last - G):
//   o  = Qh S + P V,   P[i, j] = sum_k q_ik k_jk exp(G_ik - G_jk)  (j <= i)
//   S' = diag(exp(G_last)) S + Kb^T V
// P = (Q . K)_d, the decayed scores of decayed_scores.cuh (shared with KDA), never formed as
// (Q E)(K / E)^T (1 / E overflows). The backward is the adjoint, from the saved state entering
// the chunk; gradients of q, k, g are partial sums per V-tile (finalize_backward).
#include "chunk_tiles.cuh"
#include "chunk_kernels.h"
#include "decayed_scores.cuh"

namespace seqpar::kernels::cuda::chunk {
// Named (not anonymous) so that the host emulator's test can include both files in one unit.
namespace gla_impl {

constexpr int C = kChunk;
constexpr int kSub = kScoreSub;

template <class In>
struct GlaForwardTiles {
  using T = typename ComputeOf<In>::type;
  T *q, *k, *G, *kr, *v, *S, *P, *o;  // o doubles as the 16 x K query factor of a block
  Stage<In> st;
  SEQPAR_HD void carve(Carve& cv, int K, int VT) {
    q = cv.take<T>(C * K);
    k = cv.take<T>(C * K);
    G = cv.take<T>(C * K);
    kr = cv.take<T>((C - kSub) * K);
    v = cv.take<T>(C * VT);
    S = cv.take<T>(K * VT);
    P = cv.take<T>(C * C);
    o = cv.take<T>(C * VT > kSub * K ? C * VT : kSub * K);
    st.carve(cv);
  }
};

template <class In>
struct GlaBackwardTiles {
  using T = typename ComputeOf<In>::type;
  T *q, *k, *G, *scr, *v, *dO, *stg, *P;  // stg: dV, and the query factor of a block
  Stage<In> st;
  SEQPAR_HD void carve(Carve& cv, int K, int VT) {
    q = cv.take<T>(C * K);
    k = cv.take<T>(C * K);
    G = cv.take<T>(C * K);
    scr = cv.take<T>(C * K);
    v = cv.take<T>(C * VT);
    dO = cv.take<T>(C * VT);
    stg = cv.take<T>(C * VT > kSub * K ? C * VT : kSub * K);
    P = cv.take<T>(C * C);
    st.carve(cv);
  }
};

template <class In>
__global__ void __launch_bounds__(kThreads) gla_forward_kernel(MatrixChunkForwardParams p) {
  using T = typename ComputeOf<In>::type;
  constexpr int VT = kValueTile<In>;
  const MatrixChunkShape s = p.shape;
  const int K = static_cast<int>(s.key), V = static_cast<int>(s.value);
  const CtaIndex at = cta_index(s, VT);
  const int col0 = at.col0;
  SEQPAR_DYNAMIC_SMEM(smem);
  Carve cv{reinterpret_cast<uintptr_t>(smem)};
  GlaForwardTiles<In> x;
  x.carve(cv, K, VT);
  T* saved = saved_states<T>(p.chunk_states, s, at.b, at.h);
  const T scale = static_cast<T>(p.scale);
  const auto enter = [&](int64_t row) {
    load_state_cols(state_at<const T>(p.initial_state, row, at.h), K, V, col0, VT, x.S);
  };
  const auto leave = [&](int64_t row) {
    store_state_cols(x.S, K, V, col0, VT, state_at<T>(p.final_state, row, at.h));
  };
  walk_chunks<false>(s, at.b, enter, [&](int64_t n, const ChunkSpan sp) {
    save_state(saved, s, n, col0, VT, x.S);
    load_rows<In>(p.q, at.b, at.h, sp.t0, sp.len, 0, K, scale, x.q);
    load_rows<In>(p.k, at.b, at.h, sp.t0, sp.len, 0, K, T(1), x.k);
    load_rows<In>(p.g, at.b, at.h, sp.t0, sp.len, 0, K, T(1), x.G);
    load_rows<In>(p.v, at.b, at.h, sp.t0, sp.len, col0, VT, T(1), x.v);
    running_sum(x.G, K);
    decayed_scores(x.st, K, x.q, x.k, x.G, x.kr, x.o, x.P);
    const T* G_last = x.G + (C - 1) * K;
    for (int e = threadIdx.x; e < C * K; e += blockDim.x) {
      x.q[e] *= exp_of(x.G[e]);                    // Qh
      x.k[e] *= exp_of(G_last[e % K] - x.G[e]);    // Kb
    }
    __syncthreads();
    cta_gemm<In, false, false>(x.st, C, VT, K, T(1), x.q, K, x.S, VT, T(0), x.o, VT);
    __syncthreads();
    for (int e = threadIdx.x; e < K * VT; e += blockDim.x) x.S[e] *= exp_of(G_last[e / VT]);
    __syncthreads();
    cta_gemm<In, false, false>(x.st, C, VT, C, T(1), x.P, C, x.v, VT, T(1), x.o, VT);
    cta_gemm<In, true, false>(x.st, K, VT, C, T(1), x.k, K, x.v, VT, T(1), x.S, VT);
    __syncthreads();
    if (p.o.data) store_rows<In>(p.o, at.b, at.h, sp.t0, sp.len, col0, VT, T(1), x.o, VT);
  }, leave);
  clear_spare_states(saved, s, col0, VT);
}

template <class In>
__global__ void __launch_bounds__(kThreads)
    gla_backward_kernel(MatrixChunkBackwardParams p, BackwardScratch ws) {
  using T = typename ComputeOf<In>::type;
  constexpr int VT = kValueTile<In>;
  const MatrixChunkShape s = p.shape;
  const int K = static_cast<int>(s.key), V = static_cast<int>(s.value);
  const CtaIndex at = cta_index(s, VT);
  const int col0 = at.col0;
  SEQPAR_DYNAMIC_SMEM(smem);
  Carve cv{reinterpret_cast<uintptr_t>(smem)};
  GlaBackwardTiles<In> x;
  x.carve(cv, K, VT);
  BackwardCta<T> c = backward_cta<T>(p, at, ws.ds, VT);
  T* tmp = static_cast<T*>(ws.tmp) + static_cast<int64_t>(blockIdx.x) * C * K;
  const T scale = static_cast<T>(p.scale);
  const auto enter = [&](int64_t row) {
    load_state_cols(state_at<const T>(p.grad_final_state, row, at.h), K, V, col0, VT, c.dSc);
  };
  const auto leave = [&](int64_t row) {
    store_state_cols(c.dSc, K, V, col0, VT, state_at<T>(p.grad_initial_state, row, at.h));
  };
  walk_chunks<true>(s, at.b, enter, [&](int64_t n, const ChunkSpan sp) {
    const T* S = c.states + n * K * V;  // ld V
    T* const dSc = c.dSc;
    T* const dSn = c.dSn;
    T* pdq = c.rows(ws.dq, n, K);
    T* pdk = c.rows(ws.dk, n, K);
    T* pdG = c.rows(ws.dg, n, K);
    load_rows<In>(p.q, at.b, at.h, sp.t0, sp.len, 0, K, scale, x.q);
    load_rows<In>(p.k, at.b, at.h, sp.t0, sp.len, 0, K, T(1), x.k);
    load_rows<In>(p.g, at.b, at.h, sp.t0, sp.len, 0, K, T(1), x.G);
    load_rows<In>(p.v, at.b, at.h, sp.t0, sp.len, col0, VT, T(1), x.v);
    load_rows<In>(p.grad_o, at.b, at.h, sp.t0, sp.len, col0, VT, T(1), x.dO);
    running_sum(x.G, K);
    decayed_scores(x.st, K, x.q, x.k, x.G, x.scr, x.stg, x.P);
    const T* G_last = x.G + (C - 1) * K;
    // dV = P^T dO + Kb dS'.
    cta_gemm<In, true, false>(x.st, C, VT, C, T(1), x.P, C, x.dO, VT, T(0), x.stg, VT);
    for (int e = threadIdx.x; e < C * K; e += blockDim.x) x.scr[e] = x.k[e] * exp_of(G_last[e % K] - x.G[e]);
    __syncthreads();
    cta_gemm<In, false, false>(x.st, C, VT, K, T(1), x.scr, K, dSc, VT, T(1), x.stg, VT);
    __syncthreads();
    store_rows<In>(p.grad_v, at.b, at.h, sp.t0, sp.len, col0, VT, T(1), x.stg, VT);
    // dQh = dO S^T (-> pdq), dKb = V dS'^T (-> pdk), dP = dO V^T (-> P).
    cta_gemm<In, false, true>(x.st, C, K, VT, T(1), x.dO, VT, S, V, T(0), pdq, K);
    cta_gemm<In, false, true>(x.st, C, K, VT, T(1), x.v, VT, dSc, VT, T(0), pdk, K);
    cta_gemm<In, false, true>(x.st, C, C, VT, T(1), x.dO, VT, x.v, VT, T(0), x.P, C);
    __syncthreads();
    for (int e = threadIdx.x; e < C * C; e += blockDim.x)
      if (e % C > e / C) x.P[e] = T(0);
    // Qh = Q exp(G), Kb, S' = diag(exp(G_last)) S + ...: dQ, dK, dG, dS; Qh into scr.
    key_decays_backward(K, V, VT, x.q, x.k, x.G, S, dSc, dSn, pdq, pdk, pdG, x.scr);
    cta_gemm<In, true, false>(x.st, K, VT, C, T(1), x.scr, K, x.dO, VT, T(1), dSn, VT);  // + Qh^T dO
    // P's share: dP = dO V^T (masked) reaches Q, K and G.
    decayed_scores_backward(x.st, K, x.q, x.k, x.G, x.P, x.scr, x.stg, tmp, pdq, pdk, pdG);
    c.swap();
  }, leave);
}

}  // namespace gla_impl

size_t gla_smem_bytes(ScalarKind dtype, int key, bool backward) {
  return smem_bytes_of<gla_impl::GlaForwardTiles, gla_impl::GlaBackwardTiles>(dtype, key, backward);
}

int gla_forward(const MatrixChunkForwardParams& p, void* stream) {
  return launch_chunk_kernel<gla_impl::GlaForwardTiles>(
      p, stream, [](auto in) { return &gla_impl::gla_forward_kernel<decltype(in)>; });
}

int gla_backward(const MatrixChunkBackwardParams& p, const BackwardScratch& w, void* stream) {
  return launch_chunk_kernel<gla_impl::GlaBackwardTiles>(
      p, stream, [](auto in) { return &gla_impl::gla_backward_kernel<decltype(in)>; }, w);
}

}  // namespace seqpar::kernels::cuda::chunk
