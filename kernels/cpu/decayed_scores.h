// Decayed scores inside one chunk, for the recurrences with a decay per key channel (GLA's
// query-key scores, chunk_gla.cpp; KDA's query-key scores and its delta-rule system's key-key
// scores, chunk_delta_rule.cpp), forward and backward:
//   P[i, j] = sum_m x_im y_jm exp(G_im - G_jm)   for j <= i,   0 above the diagonal,
// with G (c x K) the running sum of the chunk's log decays.
//
// P must not be formed as (x exp(G)) (y exp(-G))^T: exp(-G) overflows once a chunk's decay
// passes the dtype's range. The chunk is cut into sub-chunks of kSub steps: a block below the
// diagonal (rows of sub-chunk a, columns before it) factors through r = G at the end of
// sub-chunk a - 1, exp(G_i - G_j) = exp(G_i - r) exp(r - G_j), both factors <= 1, and is one
// matrix product; a diagonal block factors through its middle step when no |G - r| in it
// exceeds kMaxFactoredLog (each factor then below e^30, far inside float32's range), else it is
// summed exactly, one exponential per (i, j, m) with j <= i, each of a non-positive number.
// Nothing is clamped or approximated.
//
// The backward takes dP (zero above the diagonal) and adds the scores' share to dx, dy and dG:
// with dx = dP (y * exp(-G)) * exp(G) taken blockwise as above, G_i's share is x_i * dx_i and
// G_j's is -y_j * dy_j (a reference r's own gradient cancels). dx and dy may be the same array
// (x = y, as KDA's key-key scores).
#pragma once

#include "chunk_tiles.h"

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET {

// Scratch of the decayed scores of one chunk (C steps, K channels), reused chunk to chunk.
template <class T>
struct DecayedScoreTiles {
  static constexpr int64_t kSub = 16;
  static constexpr double kMaxFactoredLog = 30.0;
  int64_t C, K;
  std::vector<T> xref, yref, yr, ediff;        // rows x K, C x K, C x K, K
  std::vector<T> ex, ey, xf, yf, dxf, dyf, xr;  // one sub-chunk, kSub x K each
  std::vector<T> dyr;                           // C x K (backward)

  DecayedScoreTiles(int64_t C_, int64_t K_, bool backward) : C(C_), K(K_) {
    for (auto* t : {&xref, &yref, &yr}) t->resize(C * K);
    ediff.resize(K);
    for (auto* t : {&ex, &ey, &xf, &yf, &dxf, &dyf, &xr}) t->resize(kSub * K);
    if (backward) dyr.resize(C * K);
  }
};

// Factors the diagonal block of steps [a0, a0 + rows) through G at its middle step when that
// keeps every factor below e^kMaxFactoredLog: fills ex = exp(G - r), ey = exp(r - G), xf = x ex,
// yf = y ey and returns true; else returns false (the block is then summed exactly).
template <class T>
bool factor_diagonal_block(int64_t a0, int64_t rows, const T* x, const T* y, const T* G,
                           DecayedScoreTiles<T>& s) {
  const int64_t K = s.K;
  const T* r = G + (a0 + rows / 2) * K;
  T worst = 0;
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < K; ++j) {
      const T d = G[(a0 + i) * K + j] - r[j];
      worst = std::max(worst, d < 0 ? -d : d);
    }
  if (!(worst <= static_cast<T>(DecayedScoreTiles<T>::kMaxFactoredLog))) return false;
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < K; ++j) {
      const T d = G[(a0 + i) * K + j] - r[j];
      s.ex[i * K + j] = d;
      s.ey[i * K + j] = -d;
    }
  exp_inplace(s.ex.data(), rows * K);
  exp_inplace(s.ey.data(), rows * K);
  for (int64_t m = 0; m < rows * K; ++m) {
    s.xf[m] = x[a0 * K + m] * s.ex[m];
    s.yf[m] = y[a0 * K + m] * s.ey[m];
  }
  return true;
}

// The block below the diagonal of sub-chunk a0 (rows of its steps, columns [0, a0)): fills
// xref = exp(G_rows - r), yref = exp(r - G_cols) and yr = y yref, r = G[a0 - 1].
template <class T>
void reference_factors(int64_t a0, int64_t rows, const T* y, const T* G, DecayedScoreTiles<T>& s) {
  const int64_t K = s.K;
  const T* r = G + (a0 - 1) * K;
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < K; ++j) s.xref[i * K + j] = G[(a0 + i) * K + j] - r[j];
  for (int64_t i = 0; i < a0; ++i)
    for (int64_t j = 0; j < K; ++j) s.yref[i * K + j] = r[j] - G[i * K + j];
  exp_inplace(s.xref.data(), rows * K);
  exp_inplace(s.yref.data(), a0 * K);
  for (int64_t m = 0; m < a0 * K; ++m) s.yr[m] = s.yref[m] * y[m];
}

// P (c x c, leading dimension ldp) = the decayed scores of x and y (c x K each, row-major).
template <class T>
void decayed_scores(int64_t c, const Gemm<T>& gemm, const T* x, const T* y, const T* G, T* P,
                    int64_t ldp, DecayedScoreTiles<T>& s) {
  constexpr int64_t kSub = DecayedScoreTiles<T>::kSub;
  const int64_t K = s.K;
  for (int64_t i = 0; i < c; ++i) std::fill(P + i * ldp, P + i * ldp + c, T(0));
  for (int64_t a0 = kSub; a0 < c; a0 += kSub) {
    const int64_t rows = std::min(kSub, c - a0);
    reference_factors(a0, rows, y, G, s);
    for (int64_t m = 0; m < rows * K; ++m) s.xr[m] = s.xref[m] * x[a0 * K + m];
    gemm(false, true, rows, a0, K, T(1), s.xr.data(), K, s.yr.data(), K, T(0), P + a0 * ldp, ldp);
  }
  for (int64_t a0 = 0; a0 < c; a0 += kSub) {
    const int64_t rows = std::min(kSub, c - a0);
    if (factor_diagonal_block(a0, rows, x, y, G, s)) {
      T* Pb = P + a0 * ldp + a0;
      gemm(false, true, rows, rows, K, T(1), s.xf.data(), K, s.yf.data(), K, T(0), Pb, ldp);
      for (int64_t i = 0; i < rows; ++i) std::fill(Pb + i * ldp + i + 1, Pb + i * ldp + rows, T(0));
      continue;
    }
    for (int64_t i = a0; i < a0 + rows; ++i) {
      const T* Gi = G + i * K;
      const T* xi = x + i * K;
      for (int64_t j = a0; j <= i; ++j) {
        const T* Gj = G + j * K;
        for (int64_t m = 0; m < K; ++m) s.ediff[m] = Gi[m] - Gj[m];
        exp_inplace(s.ediff.data(), K);
        const T* yj = y + j * K;
        T sum = 0;
        for (int64_t m = 0; m < K; ++m) sum += xi[m] * yj[m] * s.ediff[m];
        P[i * ldp + j] = sum;
      }
    }
  }
}

// dx += dP's share through x, dy += through y, dG += through G (all c x K), for dP (c x c,
// leading dimension ldp, zero above the diagonal) the gradient of decayed_scores(x, y).
template <class T>
void decayed_scores_backward(int64_t c, const Gemm<T>& gemm, const T* x, const T* y, const T* G,
                             const T* dP, int64_t ldp, T* dx, T* dy, T* dG,
                             DecayedScoreTiles<T>& s) {
  constexpr int64_t kSub = DecayedScoreTiles<T>::kSub;
  const int64_t K = s.K;
  // Below the diagonal blocks: P_blk = Xr Yr^T with Xr = x exp(G - r), Yr = y exp(r - G).
  for (int64_t a0 = kSub; a0 < c; a0 += kSub) {
    const int64_t rows = std::min(kSub, c - a0);
    reference_factors(a0, rows, y, G, s);
    const T* dPb = dP + a0 * ldp;
    // dXr = dP_blk Yr; dx += exp(G - r) dXr; G_i gains x exp(G - r) dXr.
    gemm(false, false, rows, K, a0, T(1), dPb, ldp, s.yr.data(), K, T(0), s.dxf.data(), K);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < K; ++j) {
        const int64_t m = (a0 + i) * K + j;
        const T add = s.xref[i * K + j] * s.dxf[i * K + j];
        dx[m] += add;
        dG[m] += x[m] * add;
        s.xr[i * K + j] = s.xref[i * K + j] * x[m];
      }
    // dYr = dP_blk^T Xr; dy += exp(r - G) dYr; G_j loses y exp(r - G) dYr.
    gemm(true, false, a0, K, rows, T(1), dPb, ldp, s.xr.data(), K, T(0), s.dyr.data(), K);
    for (int64_t m = 0; m < a0 * K; ++m) {
      const T add = s.yref[m] * s.dyr[m];
      dy[m] += add;
      dG[m] -= y[m] * add;
    }
  }
  // The diagonal blocks: factored where factor_diagonal_block allows (dXf = dP Yf,
  // dYf = dP^T Xf), else exactly with e_ijm = exp(G_im - G_jm).
  for (int64_t a0 = 0; a0 < c; a0 += kSub) {
    const int64_t rows = std::min(kSub, c - a0);
    if (factor_diagonal_block(a0, rows, x, y, G, s)) {
      const T* dPb = dP + a0 * ldp + a0;
      gemm(false, false, rows, K, rows, T(1), dPb, ldp, s.yf.data(), K, T(0), s.dxf.data(), K);
      gemm(true, false, rows, K, rows, T(1), dPb, ldp, s.xf.data(), K, T(0), s.dyf.data(), K);
      for (int64_t m = 0; m < rows * K; ++m) {
        const int64_t at = a0 * K + m;
        dx[at] += s.ex[m] * s.dxf[m];
        dy[at] += s.ey[m] * s.dyf[m];
        dG[at] += s.xf[m] * s.dxf[m] - s.yf[m] * s.dyf[m];
      }
      continue;
    }
    for (int64_t i = a0; i < a0 + rows; ++i) {
      const T* Gi = G + i * K;
      const T* xi = x + i * K;
      for (int64_t j = a0; j <= i; ++j) {
        const T d = dP[i * ldp + j];
        if (d == T(0)) continue;
        const T* Gj = G + j * K;
        const T* yj = y + j * K;
        for (int64_t m = 0; m < K; ++m) s.ediff[m] = Gi[m] - Gj[m];
        exp_inplace(s.ediff.data(), K);
        for (int64_t m = 0; m < K; ++m) {
          const T e = d * s.ediff[m];
          const T t = xi[m] * yj[m] * e;
          dx[i * K + m] += yj[m] * e;
          dy[j * K + m] += xi[m] * e;
          dG[i * K + m] += t;
          dG[j * K + m] -= t;
        }
      }
    }
  }
}

}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET
