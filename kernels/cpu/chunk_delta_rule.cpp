// Fused chunk kernels of the delta rule on the CPU, forward and backward (matrix_state_params.h;
// the math in docs/matrix_state.md, "Fused kernels"): gated DeltaNet (one decay per head and
// step) and KDA (one decay per key channel, kKeyDecay), which differ only in how a decay
// reaches a row of keys or queries.
//
// A run of chunks (one (batch, head) pair, or a range of its chunks: chunk_ranges.h) goes through
// them in order, all of a chunk's work in tiles of a few tens of KiB that stay in cache. Per
// chunk, entered with state S (K x V), with G the running sum of g inside the chunk (c values,
// or c x K with a decay per key channel), gam = exp(G), Lam = exp(G_last) (a scalar, or the
// diagonal of a K x K matrix), the decayed scores of x and y
//   (x . y)_d[i, j] = sum_m x_im y_jm exp(G_i(m) - G_j(m))   (j <= i, 0 above),
// (for one decay per head D * X Y^T with D[i, j] = exp(G_i - G_j); per key channel
// decayed_scores.h, which never forms exp(-G)):
//   A  = strictly_lower(diag(beta) (K . K)_d),  (I + A) [U | W] = [diag(beta) V | diag(beta) gam K]
//   w  = U - W S                      (the delta rule's pseudo-values)
//   o  = (gam Q) S + (Q . K)_d w
//   S' = Lam S + Kbar^T w,            Kbar = exp(G_last - G) K
// (Q already scaled; gam K, gam Q and exp(G_last - G) K row- or element-wise.) Every
// exponential is of a non-positive number. The forward saves only the state entering each
// chunk; the backward runs the chunks from the last, recomputes the chunk's quantities from its
// saved state and applies the adjoint of each line above (derived in docs/matrix_state.md),
// carrying dS, the gradient of the state entering the chunk. DeltaRun below is what
// chunk_ranges.h schedules: a chunk forward or backward, and a range map's step.

#include <optional>

#include "chunk_ranges.h"
#include "decayed_scores.h"

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET {
namespace {

// The tiles one worker needs for one chunk (C steps, K keys, V values), reused chunk to chunk.
// With kKeyDecay, G, gam and ebar hold K values per step and lam K values; else one.
template <class T, bool kKeyDecay>
struct DeltaTiles {
  int64_t C, K, V, R, GK;  // R = V + K, the width of [U | W]; GK = values of a step's decay
  std::vector<T> q, k, v, G, gam, beta, D, KK, A, UW, w, QK, o, S, kbar, ebar, qg, lam;
  std::vector<T> kmap;  // C x K: W M or Kbar M for a range's map
  // backward only
  std::vector<T> dout, dw, dP, doS, dq, dk, dS, dS_prev, dkbar, X, dA, dG, dgam, dbeta, dv;
  std::optional<DecayedScoreTiles<T>> scores;  // kKeyDecay only

  DeltaTiles(int64_t C_, int64_t K_, int64_t V_, bool backward)
      : C(C_), K(K_), V(V_), R(V_ + K_), GK(kKeyDecay ? K_ : 1) {
    for (auto* t : {&q, &k, &kbar, &kmap, &qg}) t->resize(C * K);
    for (auto* t : {&v, &w, &o}) t->resize(C * V);
    for (auto* t : {&G, &gam, &ebar}) t->resize(C * GK);
    beta.resize(C);
    lam.resize(GK);
    for (auto* t : {&KK, &A, &QK}) t->resize(C * C);
    if (!kKeyDecay) D.resize(C * C);
    if (kKeyDecay) scores.emplace(C, K, backward);
    UW.resize(C * R);
    S.resize(K * V);
    if (backward) {
      for (auto* t : {&doS, &dq, &dk, &dkbar}) t->resize(C * K);
      for (auto* t : {&dout, &dw, &dv}) t->resize(C * V);
      for (auto* t : {&dP, &dA}) t->resize(C * C);
      for (auto* t : {&dS, &dS_prev}) t->resize(K * V);
      for (auto* t : {&dG, &dgam}) t->resize(C * GK);
      dbeta.resize(C);
      X.resize(C * R);
    }
  }
  // The decay of step i's channel j in `e` (gam or ebar).
  T at(const std::vector<T>& e, int64_t i, int64_t j) const {
    return kKeyDecay ? e[i * K + j] : e[i];
  }
};

// X (K x cols) = Lam X: row j times lam_j, or all of it times lam.
template <class T, bool kKey>
void decay_rows(const DeltaTiles<T, kKey>& x, T* X, int64_t cols) {
  for (int64_t i = 0; i < x.K; ++i) {
    const T l = x.lam[kKey ? i : 0];
    for (int64_t j = 0; j < cols; ++j) X[i * cols + j] *= l;
  }
}

// The decayed scores (x . y)_d of two c x K tiles into P (leading dimension C).
template <class T, bool kKey>
void scores_of(int64_t c, const Gemm<T>& gemm, const T* a, const T* b, DeltaTiles<T, kKey>& x,
               T* P) {
  const int64_t C = x.C;
  if constexpr (kKey) {
    decayed_scores(c, gemm, a, b, x.G.data(), P, C, *x.scores);
  } else {
    gemm(false, true, c, c, x.K, T(1), a, x.K, b, x.K, T(0), P, C);
    for (int64_t i = 0; i < c; ++i)
      for (int64_t j = 0; j < c; ++j) P[i * C + j] *= x.D[i * C + j];  // D is 0 above
  }
}

// Everything of a chunk that does not depend on the state: G, gam, lam, D, KK, A, [U | W],
// Kbar, gam Q. Leaves q (scaled), k, v, beta loaded. c = steps in this chunk.
template <class In, class T, bool kKey, class Params>
void chunk_prepare(const Params& p, int64_t b, int64_t h, int64_t t0, int64_t c,
                   const Gemm<T>& gemm, DeltaTiles<T, kKey>& x) {
  const int64_t C = x.C, K = x.K, V = x.V, R = x.R, GK = x.GK;
  load_tile<In, T>(p.q, b, t0, h, c, K, static_cast<T>(p.scale), x.q.data());
  load_tile<In, T>(p.k, b, t0, h, c, K, T(1), x.k.data());
  load_tile<In, T>(p.v, b, t0, h, c, V, T(1), x.v.data());
  if constexpr (kKey) {
    load_tile<In, T>(p.g, b, t0, h, c, K, T(1), x.G.data());
  } else {
    load_gate<In, T>(p.g, b, t0, h, c, x.G.data());
  }
  load_gate<In, T>(p.beta, b, t0, h, c, x.beta.data());
  for (int64_t i = 1; i < c; ++i)
    for (int64_t j = 0; j < GK; ++j) x.G[i * GK + j] += x.G[(i - 1) * GK + j];
  std::copy_n(x.G.begin(), c * GK, x.gam.begin());
  exp_inplace(x.gam.data(), c * GK);
  const T* G_last = x.G.data() + (c - 1) * GK;
  std::copy_n(x.gam.data() + (c - 1) * GK, GK, x.lam.begin());
  for (int64_t i = 0; i < c; ++i)
    for (int64_t j = 0; j < GK; ++j) x.ebar[i * GK + j] = G_last[j] - x.G[i * GK + j];
  exp_inplace(x.ebar.data(), c * GK);
  if constexpr (!kKey) {
    // D[i, j] = exp(G_i - G_j) on and below the diagonal, 0 above.
    for (int64_t i = 0; i < c; ++i) {
      T* row = x.D.data() + i * C;
      for (int64_t j = 0; j <= i; ++j) row[j] = x.G[i] - x.G[j];
      exp_inplace(row, i + 1);
      std::fill(row + i + 1, row + c, T(0));
    }
  }
  scores_of(c, gemm, x.k.data(), x.k.data(), x, x.KK.data());
  for (int64_t i = 0; i < c; ++i) {
    T* a = x.A.data() + i * C;
    const T* kk = x.KK.data() + i * C;
    for (int64_t j = 0; j < i; ++j) a[j] = x.beta[i] * kk[j];
    std::fill(a + i, a + c, T(0));
  }
  // [U | W]: forward substitution with the unit lower triangular I + A.
  for (int64_t i = 0; i < c; ++i) {
    T* row = x.UW.data() + i * R;
    const T* vi = x.v.data() + i * V;
    const T* ki = x.k.data() + i * K;
    const T bi = x.beta[i];
    for (int64_t j = 0; j < V; ++j) row[j] = bi * vi[j];
    for (int64_t j = 0; j < K; ++j) row[V + j] = bi * x.at(x.gam, i, j) * ki[j];
    const T* a = x.A.data() + i * C;
    for (int64_t j = 0; j < i; ++j) {
      const T aij = a[j];
      if (aij == T(0)) continue;
      const T* rj = x.UW.data() + j * R;
      for (int64_t m = 0; m < R; ++m) row[m] -= aij * rj[m];
    }
  }
  for (int64_t i = 0; i < c; ++i)
    for (int64_t j = 0; j < K; ++j) {
      x.kbar[i * K + j] = x.at(x.ebar, i, j) * x.k[i * K + j];
      x.qg[i * K + j] = x.at(x.gam, i, j) * x.q[i * K + j];
    }
}

// w = U - W S, the delta rule's pseudo-values for the state S (after chunk_prepare).
template <class T, bool kKey>
void pseudo_values(int64_t c, const Gemm<T>& gemm, DeltaTiles<T, kKey>& x, const T* S) {
  const int64_t K = x.K, V = x.V, R = x.R;
  for (int64_t i = 0; i < c; ++i) std::copy_n(x.UW.data() + i * R, V, x.w.data() + i * V);
  gemm(false, false, c, V, K, T(-1), x.UW.data() + V, R, S, V, T(1), x.w.data(), V);
}

// S = Lam S + Kbar^T w (after pseudo_values).
template <class T, bool kKey>
void advance_state(int64_t c, const Gemm<T>& gemm, DeltaTiles<T, kKey>& x, T* S) {
  decay_rows(x, S, x.V);
  gemm(true, false, x.K, x.V, c, T(1), x.kbar.data(), x.K, x.w.data(), x.V, T(1), S, x.V);
}

// The gradient of the state entering the chunk from dS, the one leaving it (x.dout and the
// scores loaded): dw = P^T dO + Kbar dS (kept in x.dw),
// dS_prev = (gam Q)^T dO + Lam dS - W^T dw.
template <class T, bool kKey>
void carry_state_gradient(int64_t c, const Gemm<T>& gemm, DeltaTiles<T, kKey>& x, const T* dS,
                          T* dS_prev) {
  const int64_t C = x.C, K = x.K, V = x.V, R = x.R;
  gemm(true, false, c, V, c, T(1), x.QK.data(), C, x.dout.data(), V, T(0), x.dw.data(), V);
  gemm(false, false, c, V, K, T(1), x.kbar.data(), K, dS, V, T(1), x.dw.data(), V);
  std::copy_n(dS, K * V, dS_prev);
  decay_rows(x, dS_prev, V);
  gemm(true, false, K, V, c, T(1), x.qg.data(), K, x.dout.data(), V, T(1), dS_prev, V);
  gemm(true, false, K, V, c, T(-1), x.UW.data() + V, R, x.dw.data(), V, T(1), dS_prev, V);
}

// The adjoint of the scores' share: dP (lower, from o's P w) or dA (strictly lower) reaches
// x, y and G. One decay per head: t_ij = dP_ij P_ij goes to G_i (+) and G_j (-) (kept in
// x.dG), then dP *= D and dx += dP y, dy += dP^T x. Per key channel: decayed_scores_backward.
template <class T, bool kKey>
void scores_backward(int64_t c, const Gemm<T>& gemm, const T* a, const T* b, const T* P, T* dP,
                     T* da, T* db, DeltaTiles<T, kKey>& x) {
  const int64_t C = x.C, K = x.K;
  if constexpr (kKey) {
    (void)P;
    decayed_scores_backward(c, gemm, a, b, x.G.data(), dP, C, da, db, x.dG.data(), *x.scores);
  } else {
    for (int64_t i = 0; i < c; ++i) {
      T* dp = dP + i * C;
      const T* pij = P + i * C;
      const T* d = x.D.data() + i * C;
      for (int64_t j = 0; j <= i; ++j) {
        const T t = dp[j] * pij[j];
        x.dG[i] += t;
        x.dG[j] -= t;
        dp[j] *= d[j];
      }
    }
    gemm(false, false, c, K, c, T(1), dP, C, b, K, T(1), da, K);
    gemm(true, false, c, K, c, T(1), dP, C, a, K, T(1), db, K);
  }
}

template <class In, class Tc, bool kKeyDecay>
struct DeltaRun {
  using T = Tc;
  using Tiles = DeltaTiles<T, kKeyDecay>;
  static constexpr bool kDiagonalMap = false;  // M: the product of the chunks' K x K transitions

  static void forward(const MatrixChunkForwardParams& p, int64_t b, int64_t h, const ChunkStep& st,
                      Tiles& x) {
    const int64_t C = x.C, K = x.K, V = x.V, c = st.steps;
    const Gemm<T> gemm{gemm_of<T>(p.gemm)};
    chunk_prepare<In>(p, b, h, st.t0, c, gemm, x);
    pseudo_values(c, gemm, x, x.S.data());
    if (p.o.data != nullptr) {
      scores_of(c, gemm, x.q.data(), x.k.data(), x, x.QK.data());
      gemm(false, false, c, V, K, T(1), x.qg.data(), K, x.S.data(), V, T(0), x.o.data(), V);
      gemm(false, false, c, V, c, T(1), x.QK.data(), C, x.w.data(), V, T(1), x.o.data(), V);
      store_tile<In, T>(p.o, b, st.t0, h, c, V, T(1), x.o.data());
    }
    advance_state(c, gemm, x, x.S.data());
  }

  // The chunk's transition is Lam - Kbar^T W: M = Lam M - Kbar^T (W M).
  static void forward_map(const MatrixChunkForwardParams& p, int64_t b, int64_t h,
                          const ChunkStep& st, RangeMap<T>& m, Tiles& x) {
    const int64_t K = x.K, R = x.R, c = st.steps;
    const Gemm<T> gemm{gemm_of<T>(p.gemm)};
    chunk_prepare<In>(p, b, h, st.t0, c, gemm, x);
    if (m.live) {
      const T* W = x.UW.data() + x.V;
      T* M = m.M.data();
      gemm(false, false, c, K, K, T(1), W, R, M, K, T(0), x.kmap.data(), K);
      decay_rows(x, M, K);
      gemm(true, false, K, K, c, T(-1), x.kbar.data(), K, x.kmap.data(), K, T(1), M, K);
    }
    pseudo_values(c, gemm, x, m.E.data());
    advance_state(c, gemm, x, m.E.data());
  }

  // The adjoint: M^T = Lam M^T - W^T (Kbar M^T).
  static void backward_map(const MatrixChunkBackwardParams& p, int64_t b, int64_t h,
                           const ChunkStep& st, RangeMap<T>& m, Tiles& x) {
    const int64_t K = x.K, R = x.R, c = st.steps;
    const Gemm<T> gemm{gemm_of<T>(p.gemm)};
    chunk_prepare<In>(p, b, h, st.t0, c, gemm, x);
    scores_of(c, gemm, x.q.data(), x.k.data(), x, x.QK.data());
    load_tile_or_zeros<In, T>(p.grad_o, b, st.t0, h, c, x.V, x.dout);
    if (m.live) {
      gemm(false, false, c, K, K, T(1), x.kbar.data(), K, m.M.data(), K, T(0), x.kmap.data(), K);
      const T* W = x.UW.data() + x.V;
      decay_rows(x, m.M.data(), K);
      gemm(true, false, K, K, c, T(-1), W, R, x.kmap.data(), K, T(1), m.M.data(), K);
    }
    carry_state_gradient(c, gemm, x, m.E.data(), x.dS_prev.data());
    std::swap(m.E, x.dS_prev);
  }

  static void backward(const MatrixChunkBackwardParams& p, int64_t b, int64_t h,
                       const ChunkStep& st, Tiles& x);
};

template <class In, class Tc, bool kKeyDecay>
void DeltaRun<In, Tc, kKeyDecay>::backward(const MatrixChunkBackwardParams& p, int64_t b,
                                           int64_t h, const ChunkStep& st, Tiles& x) {
  const int64_t C = x.C, K = x.K, V = x.V, R = x.R, GK = x.GK, c = st.steps, t0 = st.t0;
  const Gemm<T> gemm{gemm_of<T>(p.gemm)};
  const T scale = static_cast<T>(p.scale);
  chunk_prepare<In>(p, b, h, t0, c, gemm, x);
  pseudo_values(c, gemm, x, x.S.data());
  scores_of(c, gemm, x.q.data(), x.k.data(), x, x.QK.data());  // x.QK now holds P = (Q . K)_d
  load_tile_or_zeros<In, T>(p.grad_o, b, t0, h, c, V, x.dout);
  // dG: the gradient of G (c x GK) directly; dgam that of gam, added as gam dgam at the end.
  std::fill(x.dG.begin(), x.dG.end(), T(0));
  std::fill(x.dgam.begin(), x.dgam.end(), T(0));
  // dw = P^T dO + Kbar dS'; the state entering the chunk: dS = (gam Q)^T dO + Lam dS' - W^T dw
  carry_state_gradient(c, gemm, x, x.dS.data(), x.dS_prev.data());
  for (int64_t i = 0; i < K; ++i) {  // Lam = gam_last
    const T r = dot(x.S.data() + i * V, x.dS.data() + i * V, V);
    x.dgam[(c - 1) * GK + (kKeyDecay ? i : 0)] += r;
  }
  // dP = dO w^T on and below the diagonal.
  gemm(false, true, c, c, V, T(1), x.dout.data(), V, x.w.data(), V, T(0), x.dP.data(), C);
  for (int64_t i = 0; i < c; ++i) std::fill(x.dP.data() + i * C + i + 1, x.dP.data() + i * C + c, T(0));
  // gam Q: d(gam Q) = dO S^T; dQ = gam d(gam Q), dgam += Q d(gam Q). Then P's share.
  gemm(false, true, c, K, V, T(1), x.dout.data(), V, x.S.data(), V, T(0), x.doS.data(), K);
  for (int64_t i = 0; i < c; ++i)
    for (int64_t j = 0; j < K; ++j) {
      const T ds = x.doS[i * K + j];
      x.dq[i * K + j] = x.at(x.gam, i, j) * ds;
      x.dgam[i * GK + (kKeyDecay ? j : 0)] += x.q[i * K + j] * ds;
    }
  std::fill(x.dk.begin(), x.dk.end(), T(0));
  scores_backward(c, gemm, x.q.data(), x.k.data(), x.QK.data(), x.dP.data(), x.dq.data(),
                  x.dk.data(), x);
  // Kbar = exp(G_last - G) K: dKbar = w dS'^T; its decay's share goes to G_last (+), G_i (-).
  gemm(false, true, c, K, V, T(1), x.w.data(), V, x.dS.data(), V, T(0), x.dkbar.data(), K);
  T* dG_last = x.dG.data() + (c - 1) * GK;
  for (int64_t i = 0; i < c; ++i)
    for (int64_t j = 0; j < K; ++j) {
      const T dkb = x.dkbar[i * K + j];
      const T r = dkb * x.kbar[i * K + j];
      const int64_t g = kKeyDecay ? j : 0;
      dG_last[g] += r;
      x.dG[i * GK + g] -= r;
      x.dk[i * K + j] += x.at(x.ebar, i, j) * dkb;
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
  // The right-hand sides diag(beta) V and diag(beta) gam K.
  for (int64_t i = 0; i < c; ++i) {
    const T* dRv = x.X.data() + i * R;
    const T* dRk = dRv + V;
    const T bi = x.beta[i];
    T rk = 0;
    for (int64_t j = 0; j < K; ++j) {
      const T gk = x.at(x.gam, i, j) * x.k[i * K + j];
      rk += dRk[j] * gk;
      x.dk[i * K + j] += bi * x.at(x.gam, i, j) * dRk[j];
      x.dgam[i * GK + (kKeyDecay ? j : 0)] += bi * dRk[j] * x.k[i * K + j];
    }
    x.dbeta[i] = dot(dRv, x.v.data() + i * V, V) + rk;
    for (int64_t j = 0; j < V; ++j) x.dv[i * V + j] = bi * dRv[j];
  }
  // A_ij = beta_i KK_ij (j < i): beta_i gains dA_ij KK_ij, and dKK = diag(beta) dA reaches K
  // (on both sides) and G through the scores.
  for (int64_t i = 0; i < c; ++i) {
    T* da = x.dA.data() + i * C;
    const T* kk = x.KK.data() + i * C;
    T row = 0;
    for (int64_t j = 0; j < i; ++j) {
      row += da[j] * kk[j];
      da[j] *= x.beta[i];
    }
    x.dbeta[i] += row;
    std::fill(da + i, da + c, T(0));
  }
  scores_backward(c, gemm, x.k.data(), x.k.data(), x.KK.data(), x.dA.data(), x.dk.data(),
                  x.dk.data(), x);
  // gam = exp(G); G = cumsum(g): dg is the reverse running sum of dG.
  for (int64_t m = 0; m < c * GK; ++m) x.dG[m] += x.gam[m] * x.dgam[m];
  for (int64_t i = c - 2; i >= 0; --i)
    for (int64_t j = 0; j < GK; ++j) x.dG[i * GK + j] += x.dG[(i + 1) * GK + j];
  store_tile<In, T>(p.grad_q, b, t0, h, c, K, scale, x.dq.data());
  store_tile<In, T>(p.grad_k, b, t0, h, c, K, T(1), x.dk.data());
  store_tile<In, T>(p.grad_v, b, t0, h, c, V, T(1), x.dv.data());
  if constexpr (kKeyDecay) {
    store_tile<In, T>(p.grad_g, b, t0, h, c, K, T(1), x.dG.data());
  } else {
    store_gate<In, T>(p.grad_g, b, t0, h, c, x.dG.data());
  }
  store_gate<In, T>(p.grad_beta, b, t0, h, c, x.dbeta.data());
  std::swap(x.dS, x.dS_prev);
}

// run_chunks over the delta rule with the recurrence's decay: per head or per key channel.
template <class Params>
void run_delta_rule(const Params& p, const char* name) {
  input_type_switch(p.dtype, name, [&](auto in) {
    using In = decltype(in);
    using T = typename ComputeOf<In>::type;
    if (p.recurrence == MatrixRecurrence::kKda) {
      run_chunks<DeltaRun<In, T, true>>(p);
    } else {
      run_chunks<DeltaRun<In, T, false>>(p);
    }
  });
}

}  // namespace

void chunk_delta_rule_forward(const MatrixChunkForwardParams& p) {
  run_delta_rule(p, "chunk_delta_rule_forward");
}
void chunk_delta_rule_backward(const MatrixChunkBackwardParams& p) {
  run_delta_rule(p, "chunk_delta_rule_backward");
}

}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET
