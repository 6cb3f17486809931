// Fused chunk kernels of gated DeltaNet on CUDA, forward and backward (matrix_state_params.h;
// the math in docs/matrix_state.md, "How it runs"; the CPU kernels in kernels/cpu/
// chunk_delta_rule.cpp). One CTA per (batch, head, V-tile) walks its chunks (chunk_tiles.cuh).
//
// Per chunk, entered with state S (K x VT), G the running sum of g, gam = exp(G),
// D[i, j] = exp(G_i - G_j) (j <= i), Q scaled:
//   A   = strictly_lower(diag(beta) D * K K^T)
//   X   = K S,  (I + A) w = diag(beta) (V - diag(gam) X)   (one forward substitution per column)
//   o   = diag(gam) Q S + (D * Q K^T) w
//   S'  = gam_last S + Kbar^T w,   Kbar = diag(exp(G_last - G)) K
// This is the CPU kernels' w = U - W S with W S folded into the right-hand side: the triangular
// system then has VT columns instead of V + K, and no W tile is kept. The backward is the
// adjoint of each line in reverse, from the saved state entering the chunk; gradients of the
// V-independent inputs are partial sums per V-tile, added up by finalize_backward.
#include "chunk_tiles.cuh"
#include "chunk_kernels.h"

namespace seqpar::kernels::cuda::chunk {
// Named (not anonymous) so that the host emulator's test can include both files in one unit.
namespace delta_impl {

constexpr int C = kChunk;

template <class In>
struct DeltaForwardTiles {
  using T = typename ComputeOf<In>::type;
  T *q, *k, *S, *A, *w, *o, *G, *gam, *ebar, *beta;
  Stage<In> st;
  SEQPAR_HD void carve(Carve& cv, int K, int VT) {
    q = cv.take<T>(C * K);
    k = cv.take<T>(C * K);
    S = cv.take<T>(K * VT);
    A = cv.take<T>(C * C);
    w = cv.take<T>(C * VT);
    o = cv.take<T>(C * VT);
    G = cv.take<T>(C);
    gam = cv.take<T>(C);
    ebar = cv.take<T>(C);
    beta = cv.take<T>(C);
    st.carve(cv);
  }
};

template <class In>
struct DeltaBackwardTiles {
  using T = typename ComputeOf<In>::type;
  T *q, *k, *w, *X, *dO, *dw, *A, *P, *dP, *G, *gam, *ebar, *beta, *dG, *dgam, *dbeta, *rr, *red;
  Stage<In> st;
  SEQPAR_HD void carve(Carve& cv, int K, int VT) {
    q = cv.take<T>(C * K);
    k = cv.take<T>(C * K);
    w = cv.take<T>(C * VT);
    X = cv.take<T>(C * VT);
    dO = cv.take<T>(C * VT);
    dw = cv.take<T>(C * VT);
    A = cv.take<T>(C * C);
    P = cv.take<T>(C * C);
    dP = cv.take<T>(C * C);
    G = cv.take<T>(C);
    gam = cv.take<T>(C);
    ebar = cv.take<T>(C);
    beta = cv.take<T>(C);
    dG = cv.take<T>(C);
    dgam = cv.take<T>(C);
    dbeta = cv.take<T>(C);
    rr = cv.take<T>(C);
    red = cv.take<T>(kThreads);
    st.carve(cv);
  }
};

// The chunk's decays from g already in x.G: G = running sum, gam = exp(G), ebar = exp(G_last - G).
template <class T>
__device__ void chunk_decays(T* G, T* gam, T* ebar) {
  __syncthreads();
  if (threadIdx.x == 0)
    for (int i = 1; i < C; ++i) G[i] += G[i - 1];
  __syncthreads();
  for (int i = threadIdx.x; i < C; i += blockDim.x) {
    gam[i] = exp_of(G[i]);
    ebar[i] = exp_of(G[C - 1] - G[i]);
  }
}

template <class In>
__global__ void __launch_bounds__(kThreads) delta_forward_kernel(MatrixChunkForwardParams p) {
  using T = typename ComputeOf<In>::type;
  constexpr int VT = kValueTile<In>;
  const MatrixChunkShape s = p.shape;
  const int K = static_cast<int>(s.key), V = static_cast<int>(s.value);
  const CtaIndex at = cta_index(s, VT);
  const int col0 = at.col0;
  SEQPAR_DYNAMIC_SMEM(smem);
  Carve cv{reinterpret_cast<uintptr_t>(smem)};
  DeltaForwardTiles<In> x;
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
    load_rows<In>(p.g, at.b, at.h, sp.t0, sp.len, 0, 1, T(1), x.G);
    load_rows<In>(p.beta, at.b, at.h, sp.t0, sp.len, 0, 1, T(1), x.beta);
    chunk_decays(x.G, x.gam, x.ebar);
    cta_gemm<In, false, true>(x.st, C, C, K, T(1), x.k, K, x.k, K, T(0), x.A, C);     // K K^T
    cta_gemm<In, false, false>(x.st, C, VT, K, T(1), x.k, K, x.S, VT, T(0), x.o, VT);  // X = K S
    __syncthreads();
    for (int e = threadIdx.x; e < C * C; e += blockDim.x) {
      const int i = e / C, j = e % C;
      x.A[e] = j < i ? x.beta[i] * exp_of(x.G[i] - x.G[j]) * x.A[e] : T(0);
    }
    for (int e = threadIdx.x; e < C * VT; e += blockDim.x) {
      const int i = e / VT;
      x.w[e] = x.beta[i] * (x.w[e] - x.gam[i] * x.o[e]);
    }
    __syncthreads();
    solve_unit_lower(x.A, x.w, VT);
    __syncthreads();
    cta_gemm<In, false, true>(x.st, C, C, K, T(1), x.q, K, x.k, K, T(0), x.A, C);      // Q K^T
    cta_gemm<In, false, false>(x.st, C, VT, K, T(1), x.q, K, x.S, VT, T(0), x.o, VT);  // Q S
    __syncthreads();
    for (int e = threadIdx.x; e < C * C; e += blockDim.x) {
      const int i = e / C, j = e % C;
      x.A[e] = j <= i ? exp_of(x.G[i] - x.G[j]) * x.A[e] : T(0);
    }
    for (int e = threadIdx.x; e < C * VT; e += blockDim.x) x.o[e] *= x.gam[e / VT];
    for (int e = threadIdx.x; e < C * K; e += blockDim.x) x.k[e] *= x.ebar[e / K];  // Kbar
    const T gam_last = x.gam[C - 1];
    for (int e = threadIdx.x; e < K * VT; e += blockDim.x) x.S[e] *= gam_last;
    __syncthreads();
    cta_gemm<In, false, false>(x.st, C, VT, C, T(1), x.A, C, x.w, VT, T(1), x.o, VT);  // + P w
    cta_gemm<In, true, false>(x.st, K, VT, C, T(1), x.k, K, x.w, VT, T(1), x.S, VT);   // + Kbar^T w
    __syncthreads();
    if (p.o.data) store_rows<In>(p.o, at.b, at.h, sp.t0, sp.len, col0, VT, T(1), x.o, VT);
  }, leave);
  clear_spare_states(saved, s, col0, VT);
}

template <class In>
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
  DeltaBackwardTiles<In> x;
  x.carve(cv, K, VT);
  BackwardCta<T> c = backward_cta<T>(p, at, ws.ds, VT);
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
    load_rows<In>(p.q, at.b, at.h, sp.t0, sp.len, 0, K, scale, x.q);
    load_rows<In>(p.k, at.b, at.h, sp.t0, sp.len, 0, K, T(1), x.k);
    load_rows<In>(p.v, at.b, at.h, sp.t0, sp.len, col0, VT, T(1), x.w);
    load_rows<In>(p.g, at.b, at.h, sp.t0, sp.len, 0, 1, T(1), x.G);
    load_rows<In>(p.beta, at.b, at.h, sp.t0, sp.len, 0, 1, T(1), x.beta);
    load_rows<In>(p.grad_o, at.b, at.h, sp.t0, sp.len, col0, VT, T(1), x.dO);
    for (int i = threadIdx.x; i < C; i += blockDim.x) x.dG[i] = x.dgam[i] = x.dbeta[i] = T(0);
    chunk_decays(x.G, x.gam, x.ebar);
    // Recompute the forward's chunk: A, X, w, P.
    cta_gemm<In, false, true>(x.st, C, C, K, T(1), x.k, K, x.k, K, T(0), x.A, C);
    cta_gemm<In, false, false>(x.st, C, VT, K, T(1), x.k, K, S, V, T(0), x.X, VT);
    __syncthreads();
    for (int e = threadIdx.x; e < C * C; e += blockDim.x) {
      const int i = e / C, j = e % C;
      x.A[e] = j < i ? x.beta[i] * exp_of(x.G[i] - x.G[j]) * x.A[e] : T(0);
    }
    for (int e = threadIdx.x; e < C * VT; e += blockDim.x) {
      const int i = e / VT;
      x.w[e] = x.beta[i] * (x.w[e] - x.gam[i] * x.X[e]);
    }
    __syncthreads();
    solve_unit_lower(x.A, x.w, VT);
    cta_gemm<In, false, true>(x.st, C, C, K, T(1), x.q, K, x.k, K, T(0), x.P, C);
    cta_gemm<In, false, false>(x.st, C, VT, K, T(1), x.k, K, dSc, VT, T(0), x.dw, VT);  // K dS'
    __syncthreads();
    for (int e = threadIdx.x; e < C * C; e += blockDim.x) {
      const int i = e / C, j = e % C;
      x.P[e] = j <= i ? exp_of(x.G[i] - x.G[j]) * x.P[e] : T(0);
    }
    for (int e = threadIdx.x; e < C * VT; e += blockDim.x) x.dw[e] *= x.ebar[e / VT];
    __syncthreads();
    // dw = P^T dO + Kbar dS';  dP = dO w^T;  dO S^T -> pdq;  dKbar = w dS'^T -> pdk.
    cta_gemm<In, true, false>(x.st, C, VT, C, T(1), x.P, C, x.dO, VT, T(1), x.dw, VT);
    cta_gemm<In, false, true>(x.st, C, C, VT, T(1), x.dO, VT, x.w, VT, T(0), x.dP, C);
    cta_gemm<In, false, true>(x.st, C, K, VT, T(1), x.dO, VT, S, V, T(0), pdq, K);
    cta_gemm<In, false, true>(x.st, C, K, VT, T(1), x.w, VT, dSc, VT, T(0), pdk, K);
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
    // The triangular system's adjoint: dRHS = (I + A)^-T dw (in dw), dA = -dRHS w^T.
    solve_unit_upper_of_lower(x.A, x.dw, VT);
    __syncthreads();
    cta_gemm<In, false, true>(x.st, C, C, VT, T(-1), x.dw, VT, x.w, VT, T(0), x.P, C);
    // RHS = diag(beta) (V - diag(gam) X): dbeta, dgam, dV; X's gradient replaces X.
    const In* vb = static_cast<const In*>(p.v.data) + at.b * p.v.batch + at.h * p.v.head;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
      T sv = 0, sx = 0;
      const bool real = i < sp.len;
      for (int j = 0; j < VT; ++j) {
        const T d = x.dw[i * VT + j];
        if (real) sv += d * static_cast<T>(to_compute(vb[(sp.t0 + i) * p.v.time + (col0 + j) * p.v.channel]));
        sx += d * x.X[i * VT + j];
        x.X[i * VT + j] = -x.beta[i] * x.gam[i] * d;
      }
      x.dbeta[i] += sv - x.gam[i] * sx;
      x.dgam[i] -= x.beta[i] * sx;
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
    T* pdG = c.rows(ws.dg, n, 1);
    T* pdb = c.rows(ws.dbeta, n, 1);
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
      pdG[i] = x.dG[i] + x.gam[i] * x.dgam[i];
      pdb[i] = x.dbeta[i];
    }
    __syncthreads();
    c.swap();
  }, leave);
}

}  // namespace delta_impl

size_t delta_smem_bytes(ScalarKind dtype, int key, bool backward) {
  return smem_bytes_of<delta_impl::DeltaForwardTiles, delta_impl::DeltaBackwardTiles>(dtype, key, backward);
}

int delta_forward(const MatrixChunkForwardParams& p, void* stream) {
  return launch_chunk_kernel<delta_impl::DeltaForwardTiles>(
      p, stream, [](auto in) { return &delta_impl::delta_forward_kernel<decltype(in)>; });
}

int delta_backward(const MatrixChunkBackwardParams& p, const BackwardScratch& w, void* stream) {
  return launch_chunk_kernel<delta_impl::DeltaBackwardTiles>(
      p, stream, [](auto in) { return &delta_impl::delta_backward_kernel<decltype(in)>; }, w);
}

}  // namespace seqpar::kernels::cuda::chunk
