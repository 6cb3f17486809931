// Fused chunk kernels of gated linear attention (GLA) on the CPU, forward and backward
// (matrix_state_params.h; the math in docs/matrix_state.md, "Fused kernels").
//
// Per chunk, entered with state S (K x V), G the running sum of g (c x K, one decay per key
// channel), E = exp(G), Qh = Q * E (Q already scaled), Kb = K * exp(G_last - G):
//   o  = Qh S + P V,   P[i, j] = sum_k q_ik k_jk exp(G_ik - G_jk)  (j <= i)
//   S' = diag(exp(G_last)) S + Kb^T V
// P comes from decayed_scores.h, which never forms exp(-G) and approximates nothing.
// The forward saves only the state entering each chunk; backward recomputes the rest. GlaRun
// below is what the scheduling over (batch, head) pairs and ranges of chunks (chunk_ranges.h)
// runs: a chunk forward or backward, and a range map's step.

#include "chunk_ranges.h"
#include "decayed_scores.h"

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET {
namespace {

template <class T>
struct GlaTiles {
  int64_t C, K, V;
  std::vector<T> q, k, v, G, E, qh, kb, eb, P, o, S, elast;
  std::vector<T> dout, dP, dq, dk, dv, dG, dS, dS_prev, tmp, dqh;
  DecayedScoreTiles<T> scores;

  GlaTiles(int64_t C_, int64_t K_, int64_t V_, bool backward)
      : C(C_), K(K_), V(V_), scores(C_, K_, backward) {
    for (auto* t : {&q, &k, &G, &E, &qh, &kb, &eb}) t->resize(C * K);
    for (auto* t : {&v, &o}) t->resize(C * V);
    P.resize(C * C);
    S.resize(K * V);
    elast.resize(K);
    if (backward) {
      for (auto* t : {&dq, &dk, &dG, &tmp, &dqh}) t->resize(C * K);
      for (auto* t : {&dout, &dv}) t->resize(C * V);
      dP.resize(C * C);
      for (auto* t : {&dS, &dS_prev}) t->resize(K * V);
    }
  }
};

// The chunk's decays: G (running sum of g) and elast = exp(G_last).
template <class In, class T>
void chunk_decays(const StepOperand& g, int64_t b, int64_t h, int64_t t0, int64_t c,
                  GlaTiles<T>& x) {
  const int64_t K = x.K;
  load_tile<In, T>(g, b, t0, h, c, K, T(1), x.G.data());
  for (int64_t i = 1; i < c; ++i)
    for (int64_t j = 0; j < K; ++j) x.G[i * K + j] += x.G[(i - 1) * K + j];
  std::copy_n(x.G.data() + (c - 1) * K, K, x.elast.data());
  exp_inplace(x.elast.data(), K);
}

// After chunk_decays: K, V and Kb = K * eb, eb = exp(G_last - G), what the state update needs.
template <class In, class T>
void chunk_keys(const StepOperand& k, const StepOperand& v, int64_t b, int64_t h, int64_t t0,
                int64_t c, GlaTiles<T>& x) {
  const int64_t K = x.K, V = x.V;
  load_tile<In, T>(k, b, t0, h, c, K, T(1), x.k.data());
  load_tile<In, T>(v, b, t0, h, c, V, T(1), x.v.data());
  const T* G_last = x.G.data() + (c - 1) * K;
  for (int64_t i = 0; i < c; ++i)
    for (int64_t j = 0; j < K; ++j) x.eb[i * K + j] = G_last[j] - x.G[i * K + j];
  exp_inplace(x.eb.data(), c * K);
  for (int64_t m = 0; m < c * K; ++m) x.kb[m] = x.k[m] * x.eb[m];
}

// After chunk_decays: Q (scaled), E = exp(G) and Qh = Q * E, what the state's share of o needs.
template <class In, class T>
void chunk_queries(const StepOperand& q, double scale, int64_t b, int64_t h, int64_t t0,
                   int64_t c, GlaTiles<T>& x) {
  const int64_t K = x.K;
  load_tile<In, T>(q, b, t0, h, c, K, static_cast<T>(scale), x.q.data());
  std::copy_n(x.G.data(), c * K, x.E.data());
  exp_inplace(x.E.data(), c * K);
  for (int64_t m = 0; m < c * K; ++m) x.qh[m] = x.q[m] * x.E[m];
}

// After the three above: the intra-chunk scores P.
template <class T>
void chunk_scores(int64_t c, const Gemm<T>& gemm, GlaTiles<T>& x) {
  decayed_scores(c, gemm, x.q.data(), x.k.data(), x.G.data(), x.P.data(), x.C, x.scores);
}

// The whole chunk: everything of it that does not depend on the state.
template <class In, class T, class Params>
void chunk_prepare(const Params& p, const ChunkStep& st, int64_t b, int64_t h, const Gemm<T>& gemm,
                   GlaTiles<T>& x) {
  chunk_decays<In, T>(p.g, b, h, st.t0, st.steps, x);
  chunk_keys<In, T>(p.k, p.v, b, h, st.t0, st.steps, x);
  chunk_queries<In, T>(p.q, p.scale, b, h, st.t0, st.steps, x);
  chunk_scores(st.steps, gemm, x);
}

// S = diag(exp(G_last)) S + Kb^T V (after chunk_keys).
template <class T>
void advance_state(int64_t c, const Gemm<T>& gemm, GlaTiles<T>& x, T* S) {
  const int64_t K = x.K, V = x.V;
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < V; ++j) S[i * V + j] *= x.elast[i];
  gemm(true, false, K, V, c, T(1), x.kb.data(), K, x.v.data(), V, T(1), S, V);
}

// The gradient of the state entering the chunk from dS, the one leaving it (x.dout loaded,
// after chunk_queries): dS_prev = Qh^T dO + diag(exp(G_last)) dS.
template <class T>
void carry_state_gradient(int64_t c, const Gemm<T>& gemm, GlaTiles<T>& x, const T* dS, T* dS_prev) {
  const int64_t K = x.K, V = x.V;
  gemm(true, false, K, V, c, T(1), x.qh.data(), K, x.dout.data(), V, T(0), dS_prev, V);
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < V; ++j) dS_prev[i * V + j] += x.elast[i] * dS[i * V + j];
}

template <class In, class Tc>
struct GlaRun {
  using T = Tc;
  using Tiles = GlaTiles<T>;
  static constexpr bool kDiagonalMap = true;  // M = diag(exp(sum of g))

  static void forward(const MatrixChunkForwardParams& p, int64_t b, int64_t h, const ChunkStep& st,
                      Tiles& x) {
    const int64_t C = x.C, K = x.K, V = x.V, c = st.steps;
    const Gemm<T> gemm{gemm_of<T>(p.gemm)};
    chunk_decays<In, T>(p.g, b, h, st.t0, c, x);
    chunk_keys<In, T>(p.k, p.v, b, h, st.t0, c, x);
    if (p.o.data != nullptr) {
      chunk_queries<In, T>(p.q, p.scale, b, h, st.t0, c, x);
      chunk_scores(c, gemm, x);
      gemm(false, false, c, V, K, T(1), x.qh.data(), K, x.S.data(), V, T(0), x.o.data(), V);
      gemm(false, false, c, V, c, T(1), x.P.data(), C, x.v.data(), V, T(1), x.o.data(), V);
      store_tile<In, T>(p.o, b, st.t0, h, c, V, T(1), x.o.data());
    }
    advance_state(c, gemm, x, x.S.data());
  }

  static void forward_map(const MatrixChunkForwardParams& p, int64_t b, int64_t h,
                          const ChunkStep& st, RangeMap<T>& m, Tiles& x) {
    const Gemm<T> gemm{gemm_of<T>(p.gemm)};
    chunk_decays<In, T>(p.g, b, h, st.t0, st.steps, x);
    chunk_keys<In, T>(p.k, p.v, b, h, st.t0, st.steps, x);
    if (m.live)
      for (int64_t i = 0; i < x.K; ++i) m.M[static_cast<size_t>(i)] *= x.elast[i];
    advance_state(st.steps, gemm, x, m.E.data());
  }

  static void backward_map(const MatrixChunkBackwardParams& p, int64_t b, int64_t h,
                           const ChunkStep& st, RangeMap<T>& m, Tiles& x) {
    const Gemm<T> gemm{gemm_of<T>(p.gemm)};
    chunk_decays<In, T>(p.g, b, h, st.t0, st.steps, x);
    chunk_queries<In, T>(p.q, p.scale, b, h, st.t0, st.steps, x);
    load_tile_or_zeros<In, T>(p.grad_o, b, st.t0, h, st.steps, x.V, x.dout);
    if (m.live)
      for (int64_t i = 0; i < x.K; ++i) m.M[static_cast<size_t>(i)] *= x.elast[i];
    carry_state_gradient(st.steps, gemm, x, m.E.data(), x.dS_prev.data());
    std::swap(m.E, x.dS_prev);
  }

  static void backward(const MatrixChunkBackwardParams& p, int64_t b, int64_t h,
                       const ChunkStep& st, Tiles& x);
};

template <class In, class Tc>
void GlaRun<In, Tc>::backward(const MatrixChunkBackwardParams& p, int64_t b, int64_t h,
                              const ChunkStep& st, Tiles& x) {
  const int64_t C = x.C, K = x.K, V = x.V, c = st.steps, t0 = st.t0;
  const Gemm<T> gemm{gemm_of<T>(p.gemm)};
  chunk_prepare<In, T>(p, st, b, h, gemm, x);
  load_tile_or_zeros<In, T>(p.grad_o, b, t0, h, c, V, x.dout);
  // dV = P^T dO + Kb dS';  dP = dO V^T (on and below the diagonal).
  gemm(true, false, c, V, c, T(1), x.P.data(), C, x.dout.data(), V, T(0), x.dv.data(), V);
  gemm(false, false, c, V, K, T(1), x.kb.data(), K, x.dS.data(), V, T(1), x.dv.data(), V);
  gemm(false, true, c, c, V, T(1), x.dout.data(), V, x.v.data(), V, T(0), x.dP.data(), C);
  for (int64_t i = 0; i < c; ++i) std::fill(x.dP.data() + i * C + i + 1, x.dP.data() + i * C + c, T(0));
  // Qh = Q * E: dQh = dO S^T; dQ = E * dQh; dG += Qh * dQh.
  gemm(false, true, c, K, V, T(1), x.dout.data(), V, x.S.data(), V, T(0), x.dqh.data(), K);
  for (int64_t m = 0; m < c * K; ++m) {
    x.dq[m] = x.E[m] * x.dqh[m];
    x.dG[m] = x.qh[m] * x.dqh[m];
  }
  // dS = Qh^T dO + diag(exp(G_last)) dS'; exp(G_last) gets sum_v S dS'.
  carry_state_gradient(c, gemm, x, x.dS.data(), x.dS_prev.data());
  T* dG_last = x.dG.data() + (c - 1) * K;
  for (int64_t i = 0; i < K; ++i)
    dG_last[i] += x.elast[i] * dot(x.S.data() + i * V, x.dS.data() + i * V, V);
  // Kb = K * exp(G_last - G): dKb = V dS'^T.
  gemm(false, true, c, K, V, T(1), x.v.data(), V, x.dS.data(), V, T(0), x.tmp.data(), K);
  for (int64_t i = 0; i < c; ++i)
    for (int64_t j = 0; j < K; ++j) {
      const T dkb = x.tmp[i * K + j];
      const T r = dkb * x.kb[i * K + j];
      x.dk[i * K + j] = x.eb[i * K + j] * dkb;
      dG_last[j] += r;
      x.dG[i * K + j] -= r;
    }
  // P = decayed scores of Q and K.
  decayed_scores_backward(c, gemm, x.q.data(), x.k.data(), x.G.data(), x.dP.data(), C,
                          x.dq.data(), x.dk.data(), x.dG.data(), x.scores);
  // G = cumsum(g) over time: dg is the reverse running sum of dG.
  for (int64_t i = c - 2; i >= 0; --i)
    for (int64_t j = 0; j < K; ++j) x.dG[i * K + j] += x.dG[(i + 1) * K + j];
  store_tile<In, T>(p.grad_q, b, t0, h, c, K, static_cast<T>(p.scale), x.dq.data());
  store_tile<In, T>(p.grad_k, b, t0, h, c, K, T(1), x.dk.data());
  store_tile<In, T>(p.grad_v, b, t0, h, c, V, T(1), x.dv.data());
  store_tile<In, T>(p.grad_g, b, t0, h, c, K, T(1), x.dG.data());
  std::swap(x.dS, x.dS_prev);
}

}  // namespace

SEQPAR_CHUNK_ENTRY(chunk_gla_forward, GlaRun, MatrixChunkForwardParams)
SEQPAR_CHUNK_ENTRY(chunk_gla_backward, GlaRun, MatrixChunkBackwardParams)

}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET
