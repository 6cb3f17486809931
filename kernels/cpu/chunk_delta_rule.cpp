// Fused chunk kernels of gated DeltaNet on the CPU, forward and backward (matrix_state_params.h;
// the math in docs/matrix_state.md, "Fused kernels").
//
// A run of chunks (one (batch, head) pair, or a range of its chunks: chunk_ranges.h) goes through
// them in order, all of a chunk's work in tiles of a few tens of KiB that stay in cache. Per
// chunk, entered with state S (K x V), with G the running sum of g inside the chunk,
// gam = exp(G), D[i, j] = exp(G_i - G_j) (j <= i):
//   A  = strictly_lower(diag(beta) D * K K^T),  (I + A) [U | W] = [diag(beta) V | diag(beta gam) K]
//   w  = U - W S                      (the delta rule's pseudo-values)
//   o  = diag(gam) Q S + (D * Q K^T) w
//   S' = gam_last S + Kbar^T w,       Kbar = diag(exp(G_last - G)) K
// (Q already scaled.) Every exponential is of a non-positive number. The forward saves only the
// state entering each chunk; the backward runs the chunks from the last, recomputes the chunk's
// quantities from its saved state and applies the adjoint of each line above (derived in
// docs/matrix_state.md), carrying dS, the gradient of the state entering the chunk. DeltaRun
// below is what chunk_ranges.h schedules: a chunk forward or backward, and a range map's step.

#include "chunk_ranges.h"

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET {
namespace {

// The tiles one worker needs for one chunk (C steps, K keys, V values), reused chunk to chunk.
template <class T>
struct DeltaTiles {
  int64_t C, K, V, R;  // R = V + K, the width of [U | W]
  std::vector<T> q, k, v, G, gam, beta, D, KK, A, UW, w, QK, o, S, kbar, ebar;
  std::vector<T> kmap;  // C x K: W M or Kbar M for a range's map
  // backward only
  std::vector<T> dout, dw, dP, doS, dq, dk, dS, dS_prev, dkbar, X, dA, dG, dgam, dbeta, dv, qg;

  DeltaTiles(int64_t C_, int64_t K_, int64_t V_, bool backward) : C(C_), K(K_), V(V_), R(V_ + K_) {
    for (auto* t : {&q, &k, &kbar, &kmap}) t->resize(C * K);
    for (auto* t : {&v, &w, &o}) t->resize(C * V);
    for (auto* t : {&G, &gam, &beta, &ebar}) t->resize(C);
    for (auto* t : {&D, &KK, &A, &QK}) t->resize(C * C);
    UW.resize(C * R);
    S.resize(K * V);
    if (backward) {
      for (auto* t : {&doS, &dq, &dk, &dkbar, &qg}) t->resize(C * K);
      for (auto* t : {&dout, &dw, &dv}) t->resize(C * V);
      for (auto* t : {&dP, &dA}) t->resize(C * C);
      for (auto* t : {&dS, &dS_prev}) t->resize(K * V);
      for (auto* t : {&dG, &dgam, &dbeta}) t->resize(C);
      X.resize(C * R);
    }
  }
};

// Everything of a chunk that does not depend on the state: G, gam, D, KK, A, [U | W], Kbar.
// Leaves q (scaled), k, v, beta loaded. c = steps in this chunk.
template <class In, class T, class Params>
void chunk_prepare(const Params& p, int64_t b, int64_t h, int64_t t0, int64_t c,
                   const Gemm<T>& gemm, DeltaTiles<T>& x) {
  const int64_t C = x.C, K = x.K, V = x.V, R = x.R;
  load_tile<In, T>(p.q, b, t0, h, c, K, static_cast<T>(p.scale), x.q.data());
  load_tile<In, T>(p.k, b, t0, h, c, K, T(1), x.k.data());
  load_tile<In, T>(p.v, b, t0, h, c, V, T(1), x.v.data());
  load_gate<In, T>(p.g, b, t0, h, c, x.G.data());
  load_gate<In, T>(p.beta, b, t0, h, c, x.beta.data());
  for (int64_t i = 1; i < c; ++i) x.G[i] += x.G[i - 1];
  std::copy(x.G.begin(), x.G.begin() + c, x.gam.begin());
  exp_inplace(x.gam.data(), c);
  const T G_last = x.G[c - 1];
  for (int64_t i = 0; i < c; ++i) x.ebar[i] = G_last - x.G[i];
  exp_inplace(x.ebar.data(), c);
  // D[i, j] = exp(G_i - G_j) on and below the diagonal, 0 above.
  for (int64_t i = 0; i < c; ++i) {
    T* row = x.D.data() + i * C;
    for (int64_t j = 0; j <= i; ++j) row[j] = x.G[i] - x.G[j];
    exp_inplace(row, i + 1);
    std::fill(row + i + 1, row + c, T(0));
  }
  gemm(false, true, c, c, K, T(1), x.k.data(), K, x.k.data(), K, T(0), x.KK.data(), C);
  for (int64_t i = 0; i < c; ++i) {
    T* a = x.A.data() + i * C;
    const T* d = x.D.data() + i * C;
    const T* kk = x.KK.data() + i * C;
    for (int64_t j = 0; j < i; ++j) a[j] = x.beta[i] * d[j] * kk[j];
    std::fill(a + i, a + c, T(0));
  }
  // [U | W]: forward substitution with the unit lower triangular I + A.
  for (int64_t i = 0; i < c; ++i) {
    T* row = x.UW.data() + i * R;
    const T* vi = x.v.data() + i * V;
    const T* ki = x.k.data() + i * K;
    const T bi = x.beta[i], bgi = x.beta[i] * x.gam[i];
    for (int64_t j = 0; j < V; ++j) row[j] = bi * vi[j];
    for (int64_t j = 0; j < K; ++j) row[V + j] = bgi * ki[j];
    const T* a = x.A.data() + i * C;
    for (int64_t j = 0; j < i; ++j) {
      const T aij = a[j];
      if (aij == T(0)) continue;
      const T* rj = x.UW.data() + j * R;
      for (int64_t m = 0; m < R; ++m) row[m] -= aij * rj[m];
    }
  }
  for (int64_t i = 0; i < c; ++i) {
    const T e = x.ebar[i];
    for (int64_t j = 0; j < K; ++j) x.kbar[i * K + j] = e * x.k[i * K + j];
  }
}

// w = U - W S, the delta rule's pseudo-values for the state S (after chunk_prepare).
template <class T>
void pseudo_values(int64_t c, const Gemm<T>& gemm, DeltaTiles<T>& x, const T* S) {
  const int64_t K = x.K, V = x.V, R = x.R;
  for (int64_t i = 0; i < c; ++i) std::copy_n(x.UW.data() + i * R, V, x.w.data() + i * V);
  gemm(false, false, c, V, K, T(-1), x.UW.data() + V, R, S, V, T(1), x.w.data(), V);
}

// The masked scores P = D * Q K^T, in QK.
template <class T>
void chunk_scores(int64_t c, const Gemm<T>& gemm, DeltaTiles<T>& x) {
  const int64_t C = x.C, K = x.K;
  gemm(false, true, c, c, K, T(1), x.q.data(), K, x.k.data(), K, T(0), x.QK.data(), C);
  for (int64_t i = 0; i < c; ++i)
    for (int64_t j = 0; j < c; ++j) x.QK[i * C + j] *= x.D[i * C + j];  // D is 0 above
}

// S = gam_last S + Kbar^T w (after pseudo_values).
template <class T>
void advance_state(int64_t c, const Gemm<T>& gemm, DeltaTiles<T>& x, T* S) {
  const int64_t K = x.K, V = x.V;
  const T gam_last = x.gam[c - 1];
  for (int64_t m = 0; m < K * V; ++m) S[m] *= gam_last;
  gemm(true, false, K, V, c, T(1), x.kbar.data(), K, x.w.data(), V, T(1), S, V);
}

// The gradient of the state entering the chunk from dS, the one leaving it (x.dout, x.qg =
// gam Q and the scores loaded): dw = P^T dO + Kbar dS (kept in x.dw),
// dS_prev = (gam Q)^T dO + gam_last dS - W^T dw.
template <class T>
void carry_state_gradient(int64_t c, const Gemm<T>& gemm, DeltaTiles<T>& x, const T* dS,
                          T* dS_prev) {
  const int64_t C = x.C, K = x.K, V = x.V, R = x.R;
  gemm(true, false, c, V, c, T(1), x.QK.data(), C, x.dout.data(), V, T(0), x.dw.data(), V);
  gemm(false, false, c, V, K, T(1), x.kbar.data(), K, dS, V, T(1), x.dw.data(), V);
  const T gam_last = x.gam[c - 1];
  gemm(true, false, K, V, c, T(1), x.qg.data(), K, x.dout.data(), V, T(0), dS_prev, V);
  for (int64_t m = 0; m < K * V; ++m) dS_prev[m] += gam_last * dS[m];
  gemm(true, false, K, V, c, T(-1), x.UW.data() + V, R, x.dw.data(), V, T(1), dS_prev, V);
}

// x.qg = gam Q.
template <class T>
void gated_queries(int64_t c, DeltaTiles<T>& x) {
  const int64_t K = x.K;
  for (int64_t i = 0; i < c; ++i)
    for (int64_t j = 0; j < K; ++j) x.qg[i * K + j] = x.gam[i] * x.q[i * K + j];
}

template <class In, class Tc>
struct DeltaRun {
  using T = Tc;
  using Tiles = DeltaTiles<T>;
  static constexpr bool kDiagonalMap = false;  // M: the product of the chunks' K x K transitions

  static void forward(const MatrixChunkForwardParams& p, int64_t b, int64_t h, const ChunkStep& st,
                      Tiles& x) {
    const int64_t C = x.C, K = x.K, V = x.V, c = st.steps;
    const Gemm<T> gemm{gemm_of<T>(p.gemm)};
    chunk_prepare<In, T>(p, b, h, st.t0, c, gemm, x);
    pseudo_values(c, gemm, x, x.S.data());
    if (p.o.data != nullptr) {
      chunk_scores(c, gemm, x);
      gemm(false, false, c, V, K, T(1), x.q.data(), K, x.S.data(), V, T(0), x.o.data(), V);
      for (int64_t i = 0; i < c; ++i)
        for (int64_t j = 0; j < V; ++j) x.o[i * V + j] *= x.gam[i];
      gemm(false, false, c, V, c, T(1), x.QK.data(), C, x.w.data(), V, T(1), x.o.data(), V);
      store_tile<In, T>(p.o, b, st.t0, h, c, V, T(1), x.o.data());
    }
    advance_state(c, gemm, x, x.S.data());
  }

  // The chunk's transition is gam_last I - Kbar^T W: M = gam_last M - Kbar^T (W M).
  static void forward_map(const MatrixChunkForwardParams& p, int64_t b, int64_t h,
                          const ChunkStep& st, RangeMap<T>& m, Tiles& x) {
    const int64_t K = x.K, R = x.R, c = st.steps;
    const Gemm<T> gemm{gemm_of<T>(p.gemm)};
    chunk_prepare<In, T>(p, b, h, st.t0, c, gemm, x);
    if (m.live) {
      const T* W = x.UW.data() + x.V;
      T* M = m.M.data();
      gemm(false, false, c, K, K, T(1), W, R, M, K, T(0), x.kmap.data(), K);
      gemm(true, false, K, K, c, T(-1), x.kbar.data(), K, x.kmap.data(), K, x.gam[c - 1], M, K);
    }
    pseudo_values(c, gemm, x, m.E.data());
    advance_state(c, gemm, x, m.E.data());
  }

  // The adjoint: M^T = gam_last M^T - W^T (Kbar M^T).
  static void backward_map(const MatrixChunkBackwardParams& p, int64_t b, int64_t h,
                           const ChunkStep& st, RangeMap<T>& m, Tiles& x) {
    const int64_t K = x.K, R = x.R, c = st.steps;
    const Gemm<T> gemm{gemm_of<T>(p.gemm)};
    chunk_prepare<In, T>(p, b, h, st.t0, c, gemm, x);
    chunk_scores(c, gemm, x);
    gated_queries(c, x);
    load_tile_or_zeros<In, T>(p.grad_o, b, st.t0, h, c, x.V, x.dout);
    if (m.live) {
      gemm(false, false, c, K, K, T(1), x.kbar.data(), K, m.M.data(), K, T(0), x.kmap.data(), K);
      const T* W = x.UW.data() + x.V;
      gemm(true, false, K, K, c, T(-1), W, R, x.kmap.data(), K, x.gam[c - 1], m.M.data(), K);
    }
    carry_state_gradient(c, gemm, x, m.E.data(), x.dS_prev.data());
    std::swap(m.E, x.dS_prev);
  }

  static void backward(const MatrixChunkBackwardParams& p, int64_t b, int64_t h,
                       const ChunkStep& st, Tiles& x);
};

template <class In, class Tc>
void DeltaRun<In, Tc>::backward(const MatrixChunkBackwardParams& p, int64_t b, int64_t h,
                                const ChunkStep& st, Tiles& x) {
  const int64_t C = x.C, K = x.K, V = x.V, R = x.R, c = st.steps, t0 = st.t0;
  const Gemm<T> gemm{gemm_of<T>(p.gemm)};
  const T scale = static_cast<T>(p.scale);
  chunk_prepare<In, T>(p, b, h, t0, c, gemm, x);
  pseudo_values(c, gemm, x, x.S.data());
  chunk_scores(c, gemm, x);  // x.QK now holds P = D * Q K^T
  gated_queries(c, x);
  load_tile_or_zeros<In, T>(p.grad_o, b, t0, h, c, V, x.dout);
  std::fill(x.dG.begin(), x.dG.end(), T(0));
  std::fill(x.dgam.begin(), x.dgam.end(), T(0));
  // dw = P^T dO + Kbar dS'; the state entering the chunk: dS = (gam Q)^T dO + gam_last dS' - W^T dw
  carry_state_gradient(c, gemm, x, x.dS.data(), x.dS_prev.data());
  x.dgam[c - 1] += dot(x.S.data(), x.dS.data(), K * V);
  // dP = dO w^T on and below the diagonal; P = D * QK, so dQK = dP * D and the decay's share
  // t_ij = dP_ij P_ij goes to G_i (+) and G_j (-).
  gemm(false, true, c, c, V, T(1), x.dout.data(), V, x.w.data(), V, T(0), x.dP.data(), C);
  for (int64_t i = 0; i < c; ++i) {
    T* dp = x.dP.data() + i * C;
    const T* pij = x.QK.data() + i * C;
    const T* d = x.D.data() + i * C;
    for (int64_t j = 0; j <= i; ++j) {
      const T t = dp[j] * pij[j];
      x.dG[i] += t;
      x.dG[j] -= t;
      dp[j] *= d[j];
    }
    std::fill(dp + i + 1, dp + c, T(0));
  }
  // dQ = diag(gam) dO S^T + dQK K;  dK = dQK^T Q;  dgam_i = q_i . (dO S^T)_i
  gemm(false, true, c, K, V, T(1), x.dout.data(), V, x.S.data(), V, T(0), x.doS.data(), K);
  for (int64_t i = 0; i < c; ++i) {
    const T* ds = x.doS.data() + i * K;
    x.dgam[i] += dot(x.q.data() + i * K, ds, K);
    for (int64_t j = 0; j < K; ++j) x.dq[i * K + j] = x.gam[i] * ds[j];
  }
  gemm(false, false, c, K, c, T(1), x.dP.data(), C, x.k.data(), K, T(1), x.dq.data(), K);
  gemm(true, false, c, K, c, T(1), x.dP.data(), C, x.q.data(), K, T(0), x.dk.data(), K);
  // Kbar = diag(exp(G_last - G)) K: dKbar = w dS'^T.
  gemm(false, true, c, K, V, T(1), x.w.data(), V, x.dS.data(), V, T(0), x.dkbar.data(), K);
  for (int64_t i = 0; i < c; ++i) {
    const T* dkb = x.dkbar.data() + i * K;
    const T r = dot(dkb, x.kbar.data() + i * K, K);
    x.dG[c - 1] += r;
    x.dG[i] -= r;
    for (int64_t j = 0; j < K; ++j) x.dk[i * K + j] += x.ebar[i] * dkb[j];
  }
  // [dU | dW] = [dw | -dw S^T], then solve (I + A)^T Y = [dU | dW] (backward substitution).
  for (int64_t i = 0; i < c; ++i) std::copy_n(x.dw.data() + i * V, V, x.X.data() + i * R);
  gemm(false, true, c, K, V, T(-1), x.dw.data(), V, x.S.data(), V, T(0), x.X.data() + V, R);
  for (int64_t j = c - 1; j > 0; --j) {
    const T* yj = x.X.data() + j * R;
    const T* a = x.A.data() + j * C;
    for (int64_t i = 0; i < j; ++i) {
      const T aji = a[i];
      if (aji == T(0)) continue;
      T* yi = x.X.data() + i * R;
      for (int64_t m = 0; m < R; ++m) yi[m] -= aji * yj[m];
    }
  }
  // dA = -strictly_lower(Y [U | W]^T).
  gemm(false, true, c, c, R, T(-1), x.X.data(), R, x.UW.data(), R, T(0), x.dA.data(), C);
  for (int64_t i = 0; i < c; ++i) {
    const T* dRv = x.X.data() + i * R;
    const T* dRk = dRv + V;
    const T rk = dot(dRk, x.k.data() + i * K, K);
    x.dbeta[i] = dot(dRv, x.v.data() + i * V, V) + x.gam[i] * rk;
    x.dgam[i] += x.beta[i] * rk;
    for (int64_t j = 0; j < V; ++j) x.dv[i * V + j] = x.beta[i] * dRv[j];
    const T bg = x.beta[i] * x.gam[i];
    for (int64_t j = 0; j < K; ++j) x.dk[i * K + j] += bg * dRk[j];
  }
  // A_ij = beta_i D_ij KK_ij (j < i): u_ij = dA_ij D_ij KK_ij feeds beta_i and G (+i, -j);
  // dKK_ij = beta_i dA_ij D_ij, symmetrized into dA (reused) for dK += (dKK + dKK^T) K.
  for (int64_t i = 0; i < c; ++i) {
    T* da = x.dA.data() + i * C;
    const T* d = x.D.data() + i * C;
    const T* kk = x.KK.data() + i * C;
    T row = 0;
    for (int64_t j = 0; j < i; ++j) {
      const T u = da[j] * d[j] * kk[j];
      row += u;
      x.dG[j] -= x.beta[i] * u;
      da[j] *= x.beta[i] * d[j];
    }
    x.dbeta[i] += row;
    x.dG[i] += x.beta[i] * row;
    std::fill(da + i, da + c, T(0));
  }
  for (int64_t i = 0; i < c; ++i)
    for (int64_t j = 0; j < i; ++j) x.dA[j * C + i] = x.dA[i * C + j];
  gemm(false, false, c, K, c, T(1), x.dA.data(), C, x.k.data(), K, T(1), x.dk.data(), K);
  // gam = exp(G); G = cumsum(g): dg is the reverse running sum of dG.
  for (int64_t i = 0; i < c; ++i) x.dG[i] += x.gam[i] * x.dgam[i];
  for (int64_t i = c - 2; i >= 0; --i) x.dG[i] += x.dG[i + 1];
  store_tile<In, T>(p.grad_q, b, t0, h, c, K, scale, x.dq.data());
  store_tile<In, T>(p.grad_k, b, t0, h, c, K, T(1), x.dk.data());
  store_tile<In, T>(p.grad_v, b, t0, h, c, V, T(1), x.dv.data());
  store_gate<In, T>(p.grad_g, b, t0, h, c, x.dG.data());
  store_gate<In, T>(p.grad_beta, b, t0, h, c, x.dbeta.data());
  std::swap(x.dS, x.dS_prev);
}

}  // namespace

SEQPAR_CHUNK_ENTRY(chunk_delta_rule_forward, DeltaRun, MatrixChunkForwardParams)
SEQPAR_CHUNK_ENTRY(chunk_delta_rule_backward, DeltaRun, MatrixChunkBackwardParams)

}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET
