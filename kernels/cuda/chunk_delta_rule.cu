// Fused chunk kernels of the delta rule on CUDA, forward and backward (matrix_state_params.h;
// the math in docs/matrix_state.md, "How it runs"; the CPU kernels in kernels/cpu/
// chunk_delta_rule.cpp): gated DeltaNet (one decay per head and step) and KDA (one decay per
// key channel, kKey), which differ only in how a decay reaches a row of keys or queries. One
// CTA per (batch, head, V-tile) walks its chunks (chunk_tiles.cuh).
//
// Per chunk, entered with state S (K x VT), G the running sum of g (64 values, or 64 x K with
// kKey), gam = exp(G), Lam = exp(G_last) (a scalar, or the diagonal of a K x K matrix), Q
// scaled, and the decayed scores
//   (x . y)_d[i, j] = sum_m x_im y_jm exp(G_i(m) - G_j(m))   (j <= i, 0 above)
// (one decay per head: D * X Y^T with D[i, j] = exp(G_i - G_j); per key channel
// decayed_scores.cuh, shared with GLA, which never forms exp(-G)):
//   A   = strictly_lower(diag(beta) (K . K)_d)
//   X   = (gam K) S,  (I + A) w = diag(beta) (V - X)   (one forward substitution per column)
//   o   = (gam Q) S + (Q . K)_d w
//   S'  = Lam S + Kbar^T w,   Kbar = exp(G_last - G) K
// (gam K, gam Q, Kbar row- or element-wise; every exponential is of a non-positive number.)
// This is the CPU kernels' w = U - W S with W S folded into the right-hand side: the triangular
// system then has VT columns instead of V + K, and no W tile is kept. The backward is the
// adjoint of each line in reverse, from the saved state entering the chunk; gradients of the
// V-independent inputs are partial sums per V-tile, added up by finalize_backward (with kKey
// the decay's gradient per key channel goes straight to those partial sums, and KDA's tiles of
// 64 x K that do not fit shared memory live in the backward's global scratch).
#include "chunk_tiles.cuh"
#include "chunk_kernels.h"
#include "decayed_scores.cuh"

namespace seqpar::kernels::cuda::chunk {
// Named (not anonymous) so that the host emulator's test can include both files in one unit.
namespace delta_impl {

constexpr int C = kChunk;

// With kKey, G holds 64 x K values and gam, ebar (computed where used) none; scr (64 x K)
// holds gam K, gam Q or Kbar and the scores' key factor, o the scores' 16 x K query factor.
template <class In, bool kKey>
struct DeltaForwardTiles {
  using T = typename ComputeOf<In>::type;
  T *q, *k, *S, *A, *w, *o, *G, *gam, *ebar, *beta, *scr;
  Stage<In> st;
  SEQPAR_HD void carve(Carve& cv, int K, int VT) {
    q = cv.take<T>(C * K);
    k = cv.take<T>(C * K);
    S = cv.take<T>(K * VT);
    A = cv.take<T>(C * C);
    w = cv.take<T>(C * VT);
    o = cv.take<T>(kKey && kScoreSub * K > C * VT ? kScoreSub * K : C * VT);
    G = cv.take<T>(kKey ? C * K : C);
    gam = cv.take<T>(kKey ? 0 : C);
    ebar = cv.take<T>(kKey ? 0 : C);
    beta = cv.take<T>(C);
    scr = cv.take<T>(kKey ? C * K : 0);
    st.carve(cv);
  }
};

// With kKey, gam, ebar, dG, dgam, rr are empty: the decay's gradient goes to the partial sums
// in global memory, as do the 64 x K scratch tiles (BackwardScratch::tmp).
template <class In, bool kKey>
struct DeltaBackwardTiles {
  using T = typename ComputeOf<In>::type;
  T *q, *k, *w, *X, *dO, *dw, *A, *P, *dP, *G, *gam, *ebar, *beta, *dG, *dgam, *dbeta, *rr, *red;
  Stage<In> st;
  SEQPAR_HD void carve(Carve& cv, int K, int VT) {
    const int c = kKey ? 0 : C;
    q = cv.take<T>(C * K);
    k = cv.take<T>(C * K);
    w = cv.take<T>(C * VT);
    X = cv.take<T>(C * VT);
    dO = cv.take<T>(C * VT);
    dw = cv.take<T>(C * VT);
    A = cv.take<T>(C * C);
    P = cv.take<T>(C * C);
    dP = cv.take<T>(C * C);
    G = cv.take<T>(kKey ? C * K : C);
    gam = cv.take<T>(c);
    ebar = cv.take<T>(c);
    beta = cv.take<T>(C);
    dG = cv.take<T>(c);
    dgam = cv.take<T>(c);
    dbeta = cv.take<T>(C);
    rr = cv.take<T>(c);
    red = cv.take<T>(kThreads);
    st.carve(cv);
  }
};
template <class In> using GatedDeltaForwardTiles = DeltaForwardTiles<In, false>;
template <class In> using GatedDeltaBackwardTiles = DeltaBackwardTiles<In, false>;
template <class In> using KdaForwardTiles = DeltaForwardTiles<In, true>;
template <class In> using KdaBackwardTiles = DeltaBackwardTiles<In, true>;

// The chunk's decays from g already in G: G = running sum (per channel with kKey); one decay
// per head also gam = exp(G), ebar = exp(G_last - G).
template <bool kKey, class T>
__device__ void chunk_decays(int K, T* G, T* gam, T* ebar) {
  if constexpr (kKey) {
    running_sum(G, K);
  } else {
    __syncthreads();
    if (threadIdx.x == 0)
      for (int i = 1; i < C; ++i) G[i] += G[i - 1];
    __syncthreads();
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
      gam[i] = exp_of(G[i]);
      ebar[i] = exp_of(G[C - 1] - G[i]);
    }
    __syncthreads();
  }
}

// P (64 x 64) = (a . b)_d, zero above the diagonal. Scratch (kKey only): br 64 x K, ar 16 x K.
// Synchronizes before returning.
template <bool kKey, class In, class T>
__device__ void scores(const Stage<In>& st, int K, const T* a, const T* b, const T* G, T* br, T* ar, T* P) {
  if constexpr (kKey) {
    decayed_scores(st, K, a, b, G, br, ar, P);
  } else {
    cta_gemm<In, false, true>(st, C, C, K, T(1), a, K, b, K, T(0), P, C);
    __syncthreads();
    for (int e = threadIdx.x; e < C * C; e += blockDim.x) {
      const int i = e / C, j = e % C;
      P[e] = j <= i ? exp_of(G[i] - G[j]) * P[e] : T(0);
    }
    __syncthreads();
  }
}

// dst[i, m] = exp(G_i(m)) src[i, m] (gam x), per channel (kKey only).
template <class T>
__device__ void gam_times(int K, const T* G, const T* src, T* dst) {
  for (int e = threadIdx.x; e < C * K; e += blockDim.x) dst[e] = exp_of(G[e]) * src[e];
}

template <class In, bool kKey>
__global__ void __launch_bounds__(kThreads) delta_forward_kernel(MatrixChunkForwardParams p) {
  using T = typename ComputeOf<In>::type;
  constexpr int VT = kValueTile<In>;
  const MatrixChunkShape s = p.shape;
  const int K = static_cast<int>(s.key), V = static_cast<int>(s.value);
  const CtaIndex at = cta_index(s, VT);
  const int col0 = at.col0;
  SEQPAR_DYNAMIC_SMEM(smem);
  Carve cv{reinterpret_cast<uintptr_t>(smem)};
  DeltaForwardTiles<In, kKey> x;
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
    load_rows<In>(p.v, at.b, at.h, sp.t0, sp.len, col0, VT, T(1), x.w);
    load_rows<In>(p.g, at.b, at.h, sp.t0, sp.len, 0, kKey ? K : 1, T(1), x.G);
    load_rows<In>(p.beta, at.b, at.h, sp.t0, sp.len, 0, 1, T(1), x.beta);
    chunk_decays<kKey>(K, x.G, x.gam, x.ebar);
    scores<kKey>(x.st, K, x.k, x.k, x.G, x.scr, x.o, x.A);  // (K . K)_d
    for (int e = threadIdx.x; e < C * C; e += blockDim.x) {
      const int i = e / C, j = e % C;
      x.A[e] = j < i ? x.beta[i] * x.A[e] : T(0);
    }
    // X = (gam K) S in o; the right-hand side diag(beta) (V - X) in w.
    if constexpr (kKey) {
      gam_times(K, x.G, x.k, x.scr);
      __syncthreads();
      cta_gemm<In, false, false>(x.st, C, VT, K, T(1), x.scr, K, x.S, VT, T(0), x.o, VT);
    } else {
      cta_gemm<In, false, false>(x.st, C, VT, K, T(1), x.k, K, x.S, VT, T(0), x.o, VT);
    }
    __syncthreads();
    for (int e = threadIdx.x; e < C * VT; e += blockDim.x) {
      const int i = e / VT;
      x.w[e] = x.beta[i] * (x.w[e] - (kKey ? x.o[e] : x.gam[i] * x.o[e]));
    }
    __syncthreads();
    solve_unit_lower(x.A, x.w, VT);
    __syncthreads();
    scores<kKey>(x.st, K, x.q, x.k, x.G, x.scr, x.o, x.A);  // P = (Q . K)_d
    // o = (gam Q) S.
    if constexpr (kKey) {
      gam_times(K, x.G, x.q, x.scr);
      __syncthreads();
      cta_gemm<In, false, false>(x.st, C, VT, K, T(1), x.scr, K, x.S, VT, T(0), x.o, VT);
      __syncthreads();
    } else {
      cta_gemm<In, false, false>(x.st, C, VT, K, T(1), x.q, K, x.S, VT, T(0), x.o, VT);
      __syncthreads();
      for (int e = threadIdx.x; e < C * VT; e += blockDim.x) x.o[e] *= x.gam[e / VT];
    }
    // Kbar in k, Lam S in S.
    const T* G_last = x.G + (C - 1) * (kKey ? K : 1);
    for (int e = threadIdx.x; e < C * K; e += blockDim.x)
      x.k[e] *= kKey ? exp_of(G_last[e % K] - x.G[e]) : x.ebar[e / K];
    for (int e = threadIdx.x; e < K * VT; e += blockDim.x)
      x.S[e] *= kKey ? exp_of(G_last[e / VT]) : x.gam[C - 1];
    __syncthreads();
    cta_gemm<In, false, false>(x.st, C, VT, C, T(1), x.A, C, x.w, VT, T(1), x.o, VT);  // + P w
    cta_gemm<In, true, false>(x.st, K, VT, C, T(1), x.k, K, x.w, VT, T(1), x.S, VT);   // + Kbar^T w
    __syncthreads();
    if (p.o.data) store_rows<In>(p.o, at.b, at.h, sp.t0, sp.len, col0, VT, T(1), x.o, VT);
  }, leave);
  clear_spare_states(saved, s, col0, VT);
}

template <class In, bool kKey>
__global__ void __launch_bounds__(kThreads)
    delta_backward_kernel(MatrixChunkBackwardParams p, BackwardScratch ws) {
  using T = typename ComputeOf<In>::type;
  constexpr int VT = kValueTile<In>;
  const MatrixChunkShape s = p.shape;
  const int K = static_cast<int>(s.key), V = static_cast<int>(s.value);
  const CtaIndex at = cta_index(s, VT);
  const int col0 = at.col0;
  SEQPAR_DYNAMIC_SMEM(smem);
  Carve cv{reinterpret_cast<uintptr_t>(smem)};
  DeltaBackwardTiles<In, kKey> x;
  x.carve(cv, K, VT);
  BackwardCta<T> c = backward_cta<T>(p, at, ws.ds, VT);
  // kKey: three 64 x K tiles of global scratch: scr (gam K, Kbar, gam Q, the scores' key
  // factor), ar (the scores' query factor), prod (products of 64 x K).
  T* const scr = kKey ? static_cast<T*>(ws.tmp) + static_cast<int64_t>(blockIdx.x) * 3 * C * K : nullptr;
  T* const ar = kKey ? scr + C * K : nullptr;
  T* const prod = kKey ? scr + 2 * C * K : nullptr;
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
    T* pdG = c.rows(ws.dg, n, kKey ? K : 1);
    load_rows<In>(p.q, at.b, at.h, sp.t0, sp.len, 0, K, scale, x.q);
    load_rows<In>(p.k, at.b, at.h, sp.t0, sp.len, 0, K, T(1), x.k);
    load_rows<In>(p.v, at.b, at.h, sp.t0, sp.len, col0, VT, T(1), x.w);
    load_rows<In>(p.g, at.b, at.h, sp.t0, sp.len, 0, kKey ? K : 1, T(1), x.G);
    load_rows<In>(p.beta, at.b, at.h, sp.t0, sp.len, 0, 1, T(1), x.beta);
    load_rows<In>(p.grad_o, at.b, at.h, sp.t0, sp.len, col0, VT, T(1), x.dO);
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
      x.dbeta[i] = T(0);
      if constexpr (!kKey) x.dG[i] = x.dgam[i] = T(0);
    }
    chunk_decays<kKey>(K, x.G, x.gam, x.ebar);
    const T* G_last = x.G + (C - 1) * (kKey ? K : 1);
    // Recompute the forward's chunk: A, X, w, P.
    scores<kKey>(x.st, K, x.k, x.k, x.G, scr, ar, x.A);
    for (int e = threadIdx.x; e < C * C; e += blockDim.x) {
      const int i = e / C, j = e % C;
      x.A[e] = j < i ? x.beta[i] * x.A[e] : T(0);
    }
    if constexpr (kKey) {
      gam_times(K, x.G, x.k, scr);
      __syncthreads();
      cta_gemm<In, false, false>(x.st, C, VT, K, T(1), scr, K, S, V, T(0), x.X, VT);
    } else {
      cta_gemm<In, false, false>(x.st, C, VT, K, T(1), x.k, K, S, V, T(0), x.X, VT);
    }
    __syncthreads();
    for (int e = threadIdx.x; e < C * VT; e += blockDim.x) {
      const int i = e / VT;
      x.w[e] = x.beta[i] * (x.w[e] - (kKey ? x.X[e] : x.gam[i] * x.X[e]));
    }
    __syncthreads();
    solve_unit_lower(x.A, x.w, VT);
    __syncthreads();
    scores<kKey>(x.st, K, x.q, x.k, x.G, scr, ar, x.P);
    // dw = P^T dO + Kbar dS';  dP = dO w^T;  dO S^T -> pdq;  dKbar = w dS'^T -> pdk.
    if constexpr (kKey) {
      for (int e = threadIdx.x; e < C * K; e += blockDim.x) scr[e] = exp_of(G_last[e % K] - x.G[e]) * x.k[e];
      __syncthreads();
      cta_gemm<In, false, false>(x.st, C, VT, K, T(1), scr, K, dSc, VT, T(0), x.dw, VT);
    } else {
      cta_gemm<In, false, false>(x.st, C, VT, K, T(1), x.k, K, dSc, VT, T(0), x.dw, VT);
      __syncthreads();
      for (int e = threadIdx.x; e < C * VT; e += blockDim.x) x.dw[e] *= x.ebar[e / VT];
    }
    __syncthreads();
    cta_gemm<In, true, false>(x.st, C, VT, C, T(1), x.P, C, x.dO, VT, T(1), x.dw, VT);
    cta_gemm<In, false, true>(x.st, C, C, VT, T(1), x.dO, VT, x.w, VT, T(0), x.dP, C);
    cta_gemm<In, false, true>(x.st, C, K, VT, T(1), x.dO, VT, S, V, T(0), pdq, K);
    cta_gemm<In, false, true>(x.st, C, K, VT, T(1), x.w, VT, dSc, VT, T(0), pdk, K);
    if constexpr (kKey) {
      __syncthreads();
      // dP on and below the diagonal; gam Q, Kbar, Lam S: dQ, dK, dG, dS; gam Q into scr.
      for (int e = threadIdx.x; e < C * C; e += blockDim.x)
        if (e % C > e / C) x.dP[e] = T(0);
      key_decays_backward(K, V, VT, x.q, x.k, x.G, S, dSc, dSn, pdq, pdk, pdG, scr);
      cta_gemm<In, true, false>(x.st, K, VT, C, T(1), scr, K, x.dO, VT, T(1), dSn, VT);  // + (gam Q)^T dO
      decayed_scores_backward(x.st, K, x.q, x.k, x.G, x.dP, scr, ar, prod, pdq, pdk, pdG);
    } else {
      T part = 0;
      for (int e = threadIdx.x; e < K * VT; e += blockDim.x) part += S[(e / VT) * V + e % VT] * dSc[e];
      const T s_dot = block_sum(part, x.red);  // <S, dS'>, synchronizes
      for (int i = threadIdx.x; i < C; i += blockDim.x) {
        const T* qi = x.q + i * K;
        const T* ki = x.k + i * K;
        T* dqi = pdq + i * K;
        T* dki = pdk + i * K;
        T qd = 0, kd = 0, t = 0;
        for (int m = 0; m < K; ++m) {
          qd += qi[m] * dqi[m];
          dqi[m] *= x.gam[i];
          kd += dki[m] * ki[m];
          dki[m] *= x.ebar[i];
        }
        for (int j = 0; j <= i; ++j) t += x.dP[i * C + j] * x.P[i * C + j];
        x.dgam[i] += qd;
        x.rr[i] = x.ebar[i] * kd;
        x.dG[i] += t - x.rr[i];
      }
      __syncthreads();
      for (int j = threadIdx.x; j < C; j += blockDim.x) {
        T t = 0;
        for (int i = j; i < C; ++i) t += x.dP[i * C + j] * x.P[i * C + j];
        x.dG[j] -= t;
        if (j == C - 1) {
          T r = 0;
          for (int i = 0; i < C; ++i) r += x.rr[i];
          x.dG[j] += r;
          x.dgam[j] += s_dot;
        }
      }
      __syncthreads();
      for (int e = threadIdx.x; e < C * C; e += blockDim.x) {
        const int i = e / C, j = e % C;
        x.dP[e] = j <= i ? x.dP[e] * exp_of(x.G[i] - x.G[j]) : T(0);
      }
      __syncthreads();
      cta_gemm<In, false, false>(x.st, C, K, C, T(1), x.dP, C, x.k, K, T(1), pdq, K);  // + dQK K
      cta_gemm<In, true, false>(x.st, C, K, C, T(1), x.dP, C, x.q, K, T(1), pdk, K);   // + dQK^T Q
    }
    // The triangular system's adjoint: dRHS = (I + A)^-T dw (in dw), dA = -dRHS w^T (in P).
    solve_unit_upper_of_lower(x.A, x.dw, VT);
    __syncthreads();
    cta_gemm<In, false, true>(x.st, C, C, VT, T(-1), x.dw, VT, x.w, VT, T(0), x.P, C);
    // RHS = diag(beta) (V - X') with X' = gam X (one decay per head) or X (kKey, gam inside X):
    // dbeta, dV, and (one decay per head) dgam; X's gradient replaces X.
    const In* vb = static_cast<const In*>(p.v.data) + at.b * p.v.batch + at.h * p.v.head;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
      T sv = 0, sx = 0;
      const bool real = i < sp.len;
      const T gi = kKey ? T(1) : x.gam[i];
      for (int j = 0; j < VT; ++j) {
        const T d = x.dw[i * VT + j];
        if (real) sv += d * static_cast<T>(to_compute(vb[(sp.t0 + i) * p.v.time + (col0 + j) * p.v.channel]));
        sx += d * x.X[i * VT + j];
        x.X[i * VT + j] = -x.beta[i] * gi * d;
      }
      x.dbeta[i] += sv - gi * sx;
      if constexpr (!kKey) x.dgam[i] -= x.beta[i] * sx;
    }
    {
      In* gv = static_cast<In*>(p.grad_v.data) + at.b * p.grad_v.batch + at.h * p.grad_v.head;
      for (int e = threadIdx.x; e < sp.len * VT; e += blockDim.x) {
        const int i = e / VT, j = e % VT;
        gv[(sp.t0 + i) * p.grad_v.time + (col0 + j) * p.grad_v.channel] =
            from_compute<In>(x.beta[i] * x.dw[e]);
      }
    }
    __syncthreads();
    T* pdb = c.rows(ws.dbeta, n, 1);
    if constexpr (kKey) {
      // X = (gam K) S: d(gam K) = dX S^T reaches K and G; dS += (gam K)^T dX.
      cta_gemm<In, false, true>(x.st, C, K, VT, T(1), x.X, VT, S, V, T(0), prod, K);
      __syncthreads();
      for (int e = threadIdx.x; e < C * K; e += blockDim.x) {
        const T E = exp_of(x.G[e]);
        pdk[e] += E * prod[e];
        pdG[e] += E * x.k[e] * prod[e];
        scr[e] = E * x.k[e];
      }
      __syncthreads();
      cta_gemm<In, true, false>(x.st, K, VT, C, T(1), scr, K, x.X, VT, T(1), dSn, VT);
      // A = beta_i (K . K)_d[i, j] (j < i): dbeta_i += sum_j dA_ij (K . K)_d[i, j]; the
      // scores' gradient diag(beta) dA (in P) reaches K on both sides and G.
      scores<kKey>(x.st, K, x.k, x.k, x.G, scr, ar, x.dP);
      for (int i = threadIdx.x; i < C; i += blockDim.x) {
        T r = 0;
        for (int j = 0; j < C; ++j) {
          T& da = x.P[i * C + j];
          if (j < i) {
            r += da * x.dP[i * C + j];
            da *= x.beta[i];
          } else {
            da = T(0);
          }
        }
        x.dbeta[i] += r;
      }
      __syncthreads();
      decayed_scores_backward(x.st, K, x.k, x.k, x.G, x.P, scr, ar, prod, pdk, pdk, pdG);
      for (int i = threadIdx.x; i < C; i += blockDim.x) pdb[i] = x.dbeta[i];
    } else {
      // X = K S: dK += dX S^T; the state entering: dS = gam_last dS' + (gam Q)^T dO + K^T dX.
      cta_gemm<In, false, true>(x.st, C, K, VT, T(1), x.X, VT, S, V, T(1), pdk, K);
      const T gam_last = x.gam[C - 1];
      for (int e = threadIdx.x; e < K * VT; e += blockDim.x) dSn[e] = gam_last * dSc[e];
      for (int e = threadIdx.x; e < C * K; e += blockDim.x) x.q[e] *= x.gam[e / K];
      cta_gemm<In, false, true>(x.st, C, C, K, T(1), x.k, K, x.k, K, T(0), x.dP, C);  // K K^T again
      __syncthreads();
      cta_gemm<In, true, false>(x.st, K, VT, C, T(1), x.q, K, x.dO, VT, T(1), dSn, VT);
      cta_gemm<In, true, false>(x.st, K, VT, C, T(1), x.k, K, x.X, VT, T(1), dSn, VT);
      // A = beta_i D_ij KK_ij: u = dA D KK (into dP), dKK = beta dA D (into P).
      for (int e = threadIdx.x; e < C * C; e += blockDim.x) {
        const int i = e / C, j = e % C;
        if (j < i) {
          const T d = exp_of(x.G[i] - x.G[j]);
          x.dP[e] = x.P[e] * d * x.dP[e];
          x.P[e] = x.beta[i] * d * x.P[e];
        } else {
          x.dP[e] = T(0);
          x.P[e] = T(0);
        }
      }
      __syncthreads();
      for (int i = threadIdx.x; i < C; i += blockDim.x) {
        T r = 0;
        for (int j = 0; j < i; ++j) r += x.dP[i * C + j];
        x.dbeta[i] += r;
        x.dG[i] += x.beta[i] * r;
      }
      __syncthreads();
      for (int j = threadIdx.x; j < C; j += blockDim.x) {
        T r = 0;
        for (int i = j + 1; i < C; ++i) r += x.beta[i] * x.dP[i * C + j];
        x.dG[j] -= r;
      }
      __syncthreads();
      for (int e = threadIdx.x; e < C * C; e += blockDim.x) {
        const int i = e / C, j = e % C;
        x.dP[e] = x.P[e] + x.P[j * C + i];
      }
      __syncthreads();
      cta_gemm<In, false, false>(x.st, C, K, C, T(1), x.dP, C, x.k, K, T(1), pdk, K);
      for (int i = threadIdx.x; i < C; i += blockDim.x) {
        pdG[i] = x.dG[i] + x.gam[i] * x.dgam[i];
        pdb[i] = x.dbeta[i];
      }
    }
    __syncthreads();
    c.swap();
  }, leave);
}

}  // namespace delta_impl

size_t delta_smem_bytes(ScalarKind dtype, int key, bool backward, bool key_decay) {
  using namespace delta_impl;
  return key_decay ? smem_bytes_of<KdaForwardTiles, KdaBackwardTiles>(dtype, key, backward)
                   : smem_bytes_of<GatedDeltaForwardTiles, GatedDeltaBackwardTiles>(dtype, key, backward);
}

int delta_forward(const MatrixChunkForwardParams& p, void* stream) {
  using namespace delta_impl;
  if (p.recurrence == MatrixRecurrence::kKda)
    return launch_chunk_kernel<KdaForwardTiles>(
        p, stream, [](auto in) { return &delta_forward_kernel<decltype(in), true>; });
  return launch_chunk_kernel<GatedDeltaForwardTiles>(
      p, stream, [](auto in) { return &delta_forward_kernel<decltype(in), false>; });
}

int delta_backward(const MatrixChunkBackwardParams& p, const BackwardScratch& w, void* stream) {
  using namespace delta_impl;
  if (p.recurrence == MatrixRecurrence::kKda)
    return launch_chunk_kernel<KdaBackwardTiles>(
        p, stream, [](auto in) { return &delta_backward_kernel<decltype(in), true>; }, w);
  return launch_chunk_kernel<GatedDeltaBackwardTiles>(
      p, stream, [](auto in) { return &delta_backward_kernel<decltype(in), false>; }, w);
}

}  // namespace seqpar::kernels::cuda::chunk
