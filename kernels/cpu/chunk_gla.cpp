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
// The forward saves only the state entering each chunk; backward recomputes the rest.
#include <memory>

#include "chunk_tiles.h"

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

// Loads the chunk and forms G, E, Qh, Kb (with eb = exp(G_last - G)), elast and P.
template <class In, class T>
void chunk_prepare(const StepOperand& q, const StepOperand& k, const StepOperand& v,
                   const StepOperand& g, double scale, int64_t b, int64_t h, int64_t t0,
                   int64_t c, const Gemm<T>& gemm, GlaTiles<T>& x) {
  const int64_t C = x.C, K = x.K, V = x.V;
  load_tile<In, T>(q, b, t0, h, c, K, static_cast<T>(scale), x.q.data());
  load_tile<In, T>(k, b, t0, h, c, K, T(1), x.k.data());
  load_tile<In, T>(v, b, t0, h, c, V, T(1), x.v.data());
  load_tile<In, T>(g, b, t0, h, c, K, T(1), x.G.data());
  for (int64_t i = 1; i < c; ++i)
    for (int64_t j = 0; j < K; ++j) x.G[i * K + j] += x.G[(i - 1) * K + j];
  std::copy_n(x.G.data(), c * K, x.E.data());
  exp_inplace(x.E.data(), c * K);
  const T* G_last = x.G.data() + (c - 1) * K;
  std::copy_n(x.E.data() + (c - 1) * K, K, x.elast.data());
  for (int64_t i = 0; i < c; ++i)
    for (int64_t j = 0; j < K; ++j) x.eb[i * K + j] = G_last[j] - x.G[i * K + j];
  exp_inplace(x.eb.data(), c * K);
  for (int64_t m = 0; m < c * K; ++m) {
    x.qh[m] = x.q[m] * x.E[m];
    x.kb[m] = x.k[m] * x.eb[m];
  }
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

template <class In, class T>
void forward_head(const MatrixChunkForwardParams& p, int64_t b, int64_t h, GlaTiles<T>& x) {
  const MatrixChunkShape& s = p.shape;
  const int64_t C = x.C, K = x.K, V = x.V, N = s.chunk_room();
  const Gemm<T> gemm{gemm_of<T>(p.gemm)};
  for (const SegmentSpan& seg : segment_spans(s, b)) {
    load_state(state_ptr<T>(p.initial_state, seg.row, h), K * V, x.S);
    int64_t n = seg.first_chunk;
    for (int64_t t0 = seg.lo; t0 < seg.hi; t0 += C, ++n) {
      const int64_t c = std::min(C, seg.hi - t0);
      if (p.chunk_states != nullptr)
        std::copy_n(x.S.data(), K * V,
                    static_cast<T*>(p.chunk_states) + ((b * s.heads + h) * N + n) * K * V);
      chunk_prepare<In, T>(p.q, p.k, p.v, p.g, p.scale, b, h, t0, c, gemm, x);
      if (p.o.data != nullptr) {
        gemm(false, false, c, V, K, T(1), x.qh.data(), K, x.S.data(), V, T(0), x.o.data(), V);
        gemm(false, false, c, V, c, T(1), x.P.data(), C, x.v.data(), V, T(1), x.o.data(), V);
        store_tile<In, T>(p.o, b, t0, h, c, V, T(1), x.o.data());
      }
      for (int64_t i = 0; i < K; ++i)
        for (int64_t j = 0; j < V; ++j) x.S[i * V + j] *= x.elast[i];
      gemm(true, false, K, V, c, T(1), x.kb.data(), K, x.v.data(), V, T(1), x.S.data(), V);
    }
    if (T* out = state_ptr<T>(p.final_state, seg.row, h)) std::copy_n(x.S.data(), K * V, out);
  }
  clear_spare_chunk_states<T>(p, b, h);
}

template <class In, class T>
void backward_head(const MatrixChunkBackwardParams& p, int64_t b, int64_t h, GlaTiles<T>& x) {
  const MatrixChunkShape& s = p.shape;
  const int64_t C = x.C, K = x.K, V = x.V, N = s.chunk_room();
  const Gemm<T> gemm{gemm_of<T>(p.gemm)};
  const std::vector<SegmentSpan> spans = segment_spans(s, b);
  for (auto seg = spans.rbegin(); seg != spans.rend(); ++seg) {
    load_state(state_ptr<T>(p.grad_final_state, seg->row, h), K * V, x.dS);
    for (int64_t jc = seg->chunks(C) - 1; jc >= 0; --jc) {
      const int64_t n = seg->first_chunk + jc, t0 = seg->lo + jc * C;
      const int64_t c = std::min(C, seg->hi - t0);
      std::copy_n(static_cast<const T*>(p.chunk_states) + ((b * s.heads + h) * N + n) * K * V,
                  K * V, x.S.data());
      chunk_prepare<In, T>(p.q, p.k, p.v, p.g, p.scale, b, h, t0, c, gemm, x);
      if (p.grad_o.data != nullptr) {
        load_tile<In, T>(p.grad_o, b, t0, h, c, V, T(1), x.dout.data());
      } else {
        std::fill(x.dout.begin(), x.dout.end(), T(0));
      }
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
      gemm(true, false, K, V, c, T(1), x.qh.data(), K, x.dout.data(), V, T(0), x.dS_prev.data(), V);
      T* dG_last = x.dG.data() + (c - 1) * K;
      for (int64_t i = 0; i < K; ++i) {
        const T* Si = x.S.data() + i * V;
        const T* dSi = x.dS.data() + i * V;
        dG_last[i] += x.elast[i] * dot(Si, dSi, V);
        for (int64_t j = 0; j < V; ++j) x.dS_prev[i * V + j] += x.elast[i] * dSi[j];
      }
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
    if (T* out = state_ptr<T>(p.grad_initial_state, seg->row, h))
      std::copy_n(x.dS.data(), K * V, out);
  }
}

}  // namespace

SEQPAR_CHUNK_ENTRY(chunk_gla_forward, GlaTiles, forward_head, MatrixChunkForwardParams, false)
SEQPAR_CHUNK_ENTRY(chunk_gla_backward, GlaTiles, backward_head, MatrixChunkBackwardParams, true)

}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET
