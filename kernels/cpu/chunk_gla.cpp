// Fused chunk kernels of gated linear attention (GLA) on the CPU, forward and backward
// (matrix_state_params.h; the math in docs/matrix_state.md, "Fused kernels").
//
// Per chunk, entered with state S (K x V), G the running sum of g (c x K, one decay per key
// channel), E = exp(G), Qh = Q * E (Q already scaled), Kb = K * exp(G_last - G):
//   o  = Qh S + P V,   P[i, j] = sum_k q_ik k_jk exp(G_ik - G_jk)  (j <= i)
//   S' = diag(exp(G_last)) S + Kb^T V
// P must not be formed as (q exp(G)) (k exp(-G))^T: exp(-G) overflows once a chunk's decay
// passes the dtype's range. The chunk is cut into sub-chunks of kSub steps: a block below the
// diagonal (query sub-chunk a, keys before it) factors through r = G at the end of sub-chunk
// a - 1, exp(G_i - G_j) = exp(G_i - r) exp(r - G_j), both factors <= 1, and is one matrix
// product; the diagonal blocks are summed exactly, one exponential per (i, j, k) with j <= i,
// each of a non-positive number. Nothing is clamped or approximated.
// The forward saves only the state entering each chunk; backward recomputes the rest. GlaRun
// below is what the scheduling over (batch, head) pairs and ranges of chunks (chunk_ranges.h)
// runs: a chunk forward or backward, and a range map's step.

#include "chunk_ranges.h"

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET {
namespace {

constexpr int64_t kSub = 16;

template <class T>
struct GlaTiles {
  int64_t C, K, V;
  std::vector<T> q, k, v, G, E, qh, kb, eb, P, o, S, kref, qref, ediff, elast;
  std::vector<T> eq, ek, qf, kf, dqf, dkf;  // one diagonal block, kSub x K each
  std::vector<T> dout, dP, dq, dk, dv, dG, dS, dS_prev, tmp, dqh, qr, kr;

  GlaTiles(int64_t C_, int64_t K_, int64_t V_, bool backward) : C(C_), K(K_), V(V_) {
    for (auto* t : {&q, &k, &G, &E, &qh, &kb, &eb, &kref, &qref}) t->resize(C * K);
    for (auto* t : {&v, &o}) t->resize(C * V);
    P.resize(C * C);
    S.resize(K * V);
    ediff.resize(K);
    elast.resize(K);
    for (auto* t : {&eq, &ek, &qf, &kf, &dqf, &dkf}) t->resize(kSub * K);
    if (backward) {
      for (auto* t : {&dq, &dk, &dG, &tmp, &dqh, &qr, &kr}) t->resize(C * K);
      for (auto* t : {&dout, &dv}) t->resize(C * V);
      dP.resize(C * C);
      for (auto* t : {&dS, &dS_prev}) t->resize(K * V);
    }
  }
};

// A diagonal block (steps a0 .. a0 + rows - 1) may factor through r = G at its middle step,
// exp(G_i - G_j) = exp(G_i - r) exp(r - G_j), when no |G - r| in it exceeds kMaxFactoredLog
// (each factor then stays below e^30, far inside float32's range): then its P block is one
// product of Qf = Q exp(G - r) and Kf = K exp(r - G), masked to j <= i. Otherwise (decays
// below about e^-4 per step) it is summed exactly, one exponential per (i, j, k). On a
// factored block the tiles eq, ek (the factors), qf, kf are filled.
constexpr double kMaxFactoredLog = 30.0;

template <class T>
bool factor_block(int64_t a0, int64_t rows, GlaTiles<T>& x) {
  const int64_t K = x.K;
  const T* r = x.G.data() + (a0 + rows / 2) * K;
  T worst = 0;
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < K; ++j) {
      const T d = x.G[(a0 + i) * K + j] - r[j];
      worst = std::max(worst, d < 0 ? -d : d);
    }
  if (!(worst <= static_cast<T>(kMaxFactoredLog))) return false;
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < K; ++j) {
      const T d = x.G[(a0 + i) * K + j] - r[j];
      x.eq[i * K + j] = d;
      x.ek[i * K + j] = -d;
    }
  exp_inplace(x.eq.data(), rows * K);
  exp_inplace(x.ek.data(), rows * K);
  for (int64_t m = 0; m < rows * K; ++m) {
    x.qf[m] = x.q[a0 * K + m] * x.eq[m];
    x.kf[m] = x.k[a0 * K + m] * x.ek[m];
  }
  return true;
}

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
  const int64_t C = x.C, K = x.K;
  // P: blocks below the diagonal through the reference r, then the exact diagonal blocks.
  std::fill(x.P.begin(), x.P.end(), T(0));
  for (int64_t a0 = kSub; a0 < c; a0 += kSub) {
    const int64_t rows = std::min(kSub, c - a0);
    const T* r = x.G.data() + (a0 - 1) * K;
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < K; ++j) x.qref[i * K + j] = x.G[(a0 + i) * K + j] - r[j];
    for (int64_t i = 0; i < a0; ++i)
      for (int64_t j = 0; j < K; ++j) x.kref[i * K + j] = r[j] - x.G[i * K + j];
    exp_inplace(x.qref.data(), rows * K);
    exp_inplace(x.kref.data(), a0 * K);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < K; ++j) x.qref[i * K + j] *= x.q[(a0 + i) * K + j];
    for (int64_t i = 0; i < a0; ++i)
      for (int64_t j = 0; j < K; ++j) x.kref[i * K + j] *= x.k[i * K + j];
    gemm(false, true, rows, a0, K, T(1), x.qref.data(), K, x.kref.data(), K, T(0),
         x.P.data() + a0 * C, C);
  }
  for (int64_t a0 = 0; a0 < c; a0 += kSub) {
    const int64_t rows = std::min(kSub, c - a0);
    if (factor_block(a0, rows, x)) {
      T* Pb = x.P.data() + a0 * C + a0;
      gemm(false, true, rows, rows, K, T(1), x.qf.data(), K, x.kf.data(), K, T(0), Pb, C);
      for (int64_t i = 0; i < rows; ++i) std::fill(Pb + i * C + i + 1, Pb + i * C + rows, T(0));
      continue;
    }
    for (int64_t i = a0; i < a0 + rows; ++i) {
      const T* Gi = x.G.data() + i * K;
      const T* qi = x.q.data() + i * K;
      for (int64_t j = a0; j <= i; ++j) {
        const T* Gj = x.G.data() + j * K;
        for (int64_t m = 0; m < K; ++m) x.ediff[m] = Gi[m] - Gj[m];
        exp_inplace(x.ediff.data(), K);
        const T* kj = x.k.data() + j * K;
        T s = 0;
        for (int64_t m = 0; m < K; ++m) s += qi[m] * kj[m] * x.ediff[m];
        x.P[i * C + j] = s;
      }
    }
  }
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
  // P below the diagonal blocks: P_blk = Qr Kr^T with Qr = Q exp(G - r), Kr = K exp(r - G).
  for (int64_t a0 = kSub; a0 < c; a0 += kSub) {
    const int64_t rows = std::min(kSub, c - a0);
    const T* r = x.G.data() + (a0 - 1) * K;
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < K; ++j) x.qref[i * K + j] = x.G[(a0 + i) * K + j] - r[j];
    for (int64_t i = 0; i < a0; ++i)
      for (int64_t j = 0; j < K; ++j) x.kref[i * K + j] = r[j] - x.G[i * K + j];
    exp_inplace(x.qref.data(), rows * K);
    exp_inplace(x.kref.data(), a0 * K);
    for (int64_t m = 0; m < a0 * K; ++m) x.kr[m] = x.kref[m] * x.k[m];
    const T* dPb = x.dP.data() + a0 * C;
    // dQr = dP_blk Kr; dQ += exp(G - r) dQr; the decay's share q exp(G - r) dQr goes to G_i.
    gemm(false, false, rows, K, a0, T(1), dPb, C, x.kr.data(), K, T(0), x.dqh.data(), K);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < K; ++j) {
        const int64_t m = (a0 + i) * K + j;
        const T add = x.qref[i * K + j] * x.dqh[i * K + j];
        x.dq[m] += add;
        x.dG[m] += x.q[m] * add;
        x.qr[i * K + j] = x.qref[i * K + j] * x.q[m];
      }
    // dKr = dP_blk^T Qr; dK += exp(r - G) dKr; G_j loses k exp(r - G) dKr.
    gemm(true, false, a0, K, rows, T(1), dPb, C, x.qr.data(), K, T(0), x.tmp.data(), K);
    for (int64_t m = 0; m < a0 * K; ++m) {
      const T add = x.kref[m] * x.tmp[m];
      x.dk[m] += add;
      x.dG[m] -= x.k[m] * add;
    }
  }
  // The diagonal blocks: factored where factor_block allows (dQf = dP Kf, dKf = dP^T Qf;
  // r's own gradient cancels), else exactly with e_ijk = exp(G_ik - G_jk).
  for (int64_t a0 = 0; a0 < c; a0 += kSub) {
    const int64_t rows = std::min(kSub, c - a0);
    if (factor_block(a0, rows, x)) {
      const T* dPb = x.dP.data() + a0 * C + a0;
      gemm(false, false, rows, K, rows, T(1), dPb, C, x.kf.data(), K, T(0), x.dqf.data(), K);
      gemm(true, false, rows, K, rows, T(1), dPb, C, x.qf.data(), K, T(0), x.dkf.data(), K);
      for (int64_t m = 0; m < rows * K; ++m) {
        const int64_t at = a0 * K + m;
        x.dq[at] += x.eq[m] * x.dqf[m];
        x.dk[at] += x.ek[m] * x.dkf[m];
        x.dG[at] += x.qf[m] * x.dqf[m] - x.kf[m] * x.dkf[m];
      }
      continue;
    }
    for (int64_t i = a0; i < a0 + rows; ++i) {
      const T* Gi = x.G.data() + i * K;
      const T* qi = x.q.data() + i * K;
      for (int64_t j = a0; j <= i; ++j) {
        const T d = x.dP[i * C + j];
        if (d == T(0)) continue;
        const T* Gj = x.G.data() + j * K;
        const T* kj = x.k.data() + j * K;
        for (int64_t m = 0; m < K; ++m) x.ediff[m] = Gi[m] - Gj[m];
        exp_inplace(x.ediff.data(), K);
        for (int64_t m = 0; m < K; ++m) {
          const T e = d * x.ediff[m];
          const T t = qi[m] * kj[m] * e;
          x.dq[i * K + m] += kj[m] * e;
          x.dk[j * K + m] += qi[m] * e;
          x.dG[i * K + m] += t;
          x.dG[j * K + m] -= t;
        }
      }
    }
  }
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
