// The decayed scores of a chunk with one decay per key channel, on CUDA, forward and backward:
// GLA's P = (Q . K)_d and KDA's (K . K)_d and (Q . K)_d (chunk_gla.cu, chunk_delta_rule.cu;
// the CPU's counterpart is kernels/cpu/decayed_scores.h). With G (64 x K) the running sum of
// the decays inside the chunk,
//   (a . b)_d[i, j] = sum_m a_im b_jm exp(G_im - G_jm)   (j <= i, 0 above).
// Never formed as (a E)(b / E)^T (1 / E = exp(-G) overflows): the chunk is cut into sub-chunks
// of 16 steps; a block below the diagonal (rows of sub-chunk a0, columns before a0) factors
// through r = G[a0 - 1], exp(G_i - G_j) = exp(G_i - r) exp(r - G_j), both factors <= 1, and is
// one tile product; the diagonal blocks are summed exactly, one exponential per (i, j, m) with
// j <= i. Every exponential is of a non-positive number.
#pragma once

#include "chunk_tiles.cuh"

namespace seqpar::kernels::cuda::chunk {

constexpr int kScoreSub = 16;  // rows of a sub-chunk

// G (64 x K) from g in place: running sum down each channel.
template <class T>
__device__ void running_sum(T* G, int K) {
  __syncthreads();
  for (int m = threadIdx.x; m < K; m += blockDim.x)
    for (int i = 1; i < kChunk; ++i) G[i * K + m] += G[(i - 1) * K + m];
  __syncthreads();
}

// The factors of the block below the diagonal at rows a0 .. a0 + 15: br = b exp(r - G) (rows
// before a0), ar = a exp(G - r) (rows a0 ..), r = G[a0 - 1]; returns r. Synchronizes before
// and after.
template <class T>
__device__ const T* sub_chunk_factors(int K, int a0, const T* a, const T* b, const T* G, T* br, T* ar) {
  const T* r = G + (a0 - 1) * K;
  __syncthreads();
  for (int e = threadIdx.x; e < a0 * K; e += blockDim.x) br[e] = b[e] * exp_of(r[e % K] - G[e]);
  for (int e = threadIdx.x; e < kScoreSub * K; e += blockDim.x)
    ar[e] = a[a0 * K + e] * exp_of(G[a0 * K + e] - r[e % K]);
  __syncthreads();
  return r;
}

// P (64 x 64, row-major) = (a . b)_d. Scratch: br (64 - 16) x K, ar 16 x K.
template <class In, class T>
__device__ void decayed_scores(const Stage<In>& st, int K, const T* a, const T* b, const T* G, T* br,
                               T* ar, T* P) {
  constexpr int C = kChunk, kSub = kScoreSub;
  for (int e = threadIdx.x; e < C * C; e += blockDim.x) {
    const int i = e / C, j = e % C;
    if (j > i) {
      P[e] = T(0);
    } else if (i / kSub == j / kSub) {
      const T* Gi = G + i * K;
      const T* Gj = G + j * K;
      const T* ai = a + i * K;
      const T* bj = b + j * K;
      T acc = 0;
      for (int m = 0; m < K; ++m) acc += ai[m] * bj[m] * exp_of(Gi[m] - Gj[m]);
      P[e] = acc;
    }
  }
  for (int a0 = kSub; a0 < C; a0 += kSub) {
    const T* r = sub_chunk_factors(K, a0, a, b, G, br, ar);
    cta_gemm<In, false, true>(st, kSub, a0, K, T(1), ar, K, br, K, T(0), P + a0 * C, C);
  }
  __syncthreads();
}

// The adjoint of P = (a . b)_d for dP (64 x 64, zero above the diagonal; not modified): adds
// to da, db and dG (each 64 x K; da and db may be the same tile when a and b are, as for
// (K . K)_d). Scratch: br 64 x K, ar 16 x K, tmp 64 x K (any memory). Per block below the
// diagonal with Ar = a exp(G - r), Br = b exp(r - G):
//   dAr = dP_blk Br  ->  da += exp(G - r) dAr,  dG += a * that
//   dBr = dP_blk^T Ar  ->  db += exp(r - G) dBr,  dG -= b * that
// and the diagonal blocks exactly, a row's (i, m) terms first, then a column's (j, m).
template <class In, class T>
__device__ void decayed_scores_backward(const Stage<In>& st, int K, const T* a, const T* b, const T* G,
                                        const T* dP, T* br, T* ar, T* tmp, T* da, T* db, T* dG) {
  constexpr int C = kChunk, kSub = kScoreSub;
  for (int a0 = kSub; a0 < C; a0 += kSub) {
    const T* r = sub_chunk_factors(K, a0, a, b, G, br, ar);
    cta_gemm<In, false, false>(st, kSub, K, a0, T(1), dP + a0 * C, C, br, K, T(0), tmp, K);
    __syncthreads();
    for (int e = threadIdx.x; e < kSub * K; e += blockDim.x) {
      const int at_e = a0 * K + e;
      const T add = exp_of(G[at_e] - r[e % K]) * tmp[e];
      da[at_e] += add;
      dG[at_e] += a[at_e] * add;
    }
    __syncthreads();
    cta_gemm<In, true, false>(st, a0, K, kSub, T(1), dP + a0 * C, C, ar, K, T(0), tmp, K);
    __syncthreads();
    for (int e = threadIdx.x; e < a0 * K; e += blockDim.x) {
      const T add = exp_of(r[e % K] - G[e]) * tmp[e];
      db[e] += add;
      dG[e] -= b[e] * add;
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < C * K; e += blockDim.x) {
    const int i = e / K, m = e % K, a0 = i / kSub * kSub;
    T d = 0;
    for (int j = a0; j <= i; ++j) d += dP[i * C + j] * exp_of(G[e] - G[j * K + m]) * b[j * K + m];
    da[e] += d;
    dG[e] += a[e] * d;
  }
  __syncthreads();
  for (int e = threadIdx.x; e < C * K; e += blockDim.x) {
    const int j = e / K, m = e % K, end = j / kSub * kSub + kSub;
    T d = 0;
    for (int i = j; i < end; ++i) d += a[i * K + m] * dP[i * C + j] * exp_of(G[i * K + m] - G[e]);
    db[e] += d;
    dG[e] -= b[e] * d;
  }
  __syncthreads();
}

// The adjoint of the decays around the state, per key channel (GLA and KDA): o's (gam Q) S and
// S' = Lam S + Kbar^T (...), Kbar = exp(G_last - G) K. Entered with d(gam Q) in dq and dKbar
// in dk (64 x K each, every thread synchronized): dq = gam d(gam Q), dk = exp(G_last - G) dKbar,
// dG = gam Q d(gam Q) - Kbar dKbar (assigned), plus, per channel at the last step, the sum of
// the Kbar terms and Lam <S, dS'>; dS = Lam dS' (assigned; S ld V, dS' and dS ld VT); and
// gam Q into qg, for the caller's dS += (gam Q)^T dO. Synchronizes before returning.
template <class T>
__device__ void key_decays_backward(int K, int V, int VT, const T* q, const T* k, const T* G, const T* S,
                                    const T* dSc, T* dSn, T* dq, T* dk, T* dG, T* qg) {
  constexpr int C = kChunk;
  const T* G_last = G + (C - 1) * K;
  for (int e = threadIdx.x; e < C * K; e += blockDim.x) {
    const T E = exp_of(G[e]);
    dG[e] = q[e] * E * dq[e];
    dq[e] *= E;
  }
  __syncthreads();
  for (int m = threadIdx.x; m < K; m += blockDim.x) {
    const T el = exp_of(G_last[m]);
    T sdot = 0;
    for (int j = 0; j < VT; ++j) {
      sdot += S[m * V + j] * dSc[m * VT + j];
      dSn[m * VT + j] = el * dSc[m * VT + j];
    }
    T acc = 0;
    for (int i = 0; i < C; ++i) {
      const int e = i * K + m;
      const T eb = exp_of(G_last[m] - G[e]);
      const T r = dk[e] * eb * k[e];
      dG[e] -= r;
      acc += r;
      dk[e] *= eb;
      qg[e] = q[e] * exp_of(G[e]);
    }
    dG[(C - 1) * K + m] += acc + el * sdot;
  }
  __syncthreads();
}

}  // namespace seqpar::kernels::cuda::chunk
