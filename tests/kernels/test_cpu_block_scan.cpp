// The 2x2 block scan's CPU kernels (cpu_block_scan.h) against a long-double sequential reference
// written here: forward, backward and summary, float32 and float64, on every scheduling path of
// the engine (channel-inner rows, time-inner chains with packed and strided time steps, look-back
// tiles with 1, 2 and 3 threads, the chained mode), reverse walks (negated time stride), absent
// h0 / grad_h / grad_h_last, lower_triangular with NaN in the unread corner, T = 0 and 1, maps
// near 0 and near 1. Part of test_cpu_kernels, so ctest runs it per CPU target and
// scripts/aarch64_check.sh under qemu for the neon and sve targets.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "seqpar/kernels/cpu_block_scan.h"

namespace {

using seqpar::kernels::BlockScanBackwardParams;
using seqpar::kernels::BlockScanForwardParams;
using seqpar::kernels::BlockScanSummaryParams;
using seqpar::kernels::ScalarKind;
// The reference's precision: long double (x87 80-bit) on x86-64; on aarch64 long double is
// IEEE quad, done in software, which qemu runs far too slowly, so double there, with a looser
// float64 tolerance.
#if defined(__aarch64__)
using LD = double;
constexpr double kFloat64Tolerance = 1e-10;
#else
using LD = long double;
constexpr double kFloat64Tolerance = 1e-12;
#endif

struct Case {
  int64_t B, T, C;
  bool time_major;  // (time, batch, channel) storage instead of (batch, time, channel)
  bool reverse, with_h0, with_g, with_g_last, lower;
  int threads;
  double radius;  // spectral radius of the maps
  bool chained = false;
};

// Element index of (b, t, c, k) with k the inner element (n of them per item).
struct Layout {
  int64_t B, T, C, n;
  bool time_major;
  int64_t index(int64_t b, int64_t t, int64_t c, int64_t k) const {
    return time_major ? ((t * B + b) * C + c) * n + k : ((b * T + t) * C + c) * n + k;
  }
  int64_t size() const { return B * T * C * n; }
  seqpar::kernels::Strides3 strides(bool reverse) const {
    seqpar::kernels::Strides3 s = time_major
                                      ? seqpar::kernels::Strides3{C * n, B * C * n, n}
                                      : seqpar::kernels::Strides3{T * C * n, C * n, n};
    if (reverse) s.time = -s.time;
    return s;
  }
  int64_t last_offset(bool reverse) const { return reverse && T > 0 ? index(0, T - 1, 0, 0) : 0; }
};

template <class S>
struct Problem {
  Case c;
  Layout lA, lv;
  std::vector<S> A, b, h0, g, g_last;
  explicit Problem(const Case& cs)
      : c(cs), lA{cs.B, cs.T, cs.C, 4, cs.time_major}, lv{cs.B, cs.T, cs.C, 2, cs.time_major} {
    std::mt19937 gen(static_cast<unsigned>(cs.B * 131 + cs.T * 7 + cs.C));
    std::uniform_real_distribution<double> u(-1, 1), angle(0, 6.283185307179586);
    A.resize(lA.size());
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t t = 0; t < c.T; ++t)
        for (int64_t ch = 0; ch < c.C; ++ch) {
          const double th = angle(gen), r = c.radius * (0.9 + 0.1 * std::abs(u(gen)));
          S* a = &A[lA.index(b, t, ch, 0)];
          a[0] = S(r * std::cos(th));
          a[1] = c.lower ? S(NAN) : S(-r * std::sin(th));
          a[2] = S(r * std::sin(th));
          a[3] = S(r * std::cos(th));
        }
    for (auto* v : {&b, &g}) {
      v->resize(lv.size());
      for (S& x : *v) x = S(u(gen));
    }
    for (auto* v : {&h0, &g_last}) {
      v->resize(c.B * c.C * 2);
      for (S& x : *v) x = S(u(gen));
    }
  }
  // A_t as read by the kernels (lower: A[0][1] = 0).
  LD a(int64_t b, int64_t t, int64_t ch, int k) const {
    if (c.lower && k == 1) return 0;
    return LD(A[lA.index(b, t, ch, k)]);
  }
  // Steps in scan order: t_of(i) = time index of the i-th step.
  int64_t t_of(int64_t i) const { return c.reverse ? c.T - 1 - i : i; }
};

ScalarKind kind_of(float) { return ScalarKind::kFloat32; }
ScalarKind kind_of(double) { return ScalarKind::kFloat64; }

template <class S>
void check_case(const Case& cs) {
  Problem<S> p(cs);
  const int64_t B = cs.B, T = cs.T, C = cs.C;
  std::vector<S> h(p.lv.size(), S(NAN)), h_last(B * C * 2, S(NAN));
  std::vector<S> gA(p.lA.size(), S(NAN)), gb(p.lv.size(), S(NAN)), gh0(B * C * 2, S(NAN));
  std::vector<S> M(B * C * 4, S(NAN)), E(B * C * 2, S(NAN));
  const double tol = std::is_same<S, float>::value ? 2e-5 : kFloat64Tolerance;
  const std::string what = "B" + std::to_string(B) + " T" + std::to_string(T) + " C" +
                           std::to_string(C) + (cs.time_major ? " tmajor" : "") +
                           (cs.reverse ? " rev" : "") + (cs.lower ? " lower" : "") + " th" +
                           std::to_string(cs.threads);

  BlockScanForwardParams fp;
  fp.dtype = kind_of(S());
  fp.shape = {B, T, C};
  fp.A = {p.A.data() + p.lA.last_offset(cs.reverse), p.lA.strides(cs.reverse)};
  fp.b = {p.b.data() + p.lv.last_offset(cs.reverse), p.lv.strides(cs.reverse)};
  fp.h = {h.data() + p.lv.last_offset(cs.reverse), p.lv.strides(cs.reverse)};
  if (cs.with_h0) fp.h0 = {p.h0.data(), {C * 2, 2}};
  fp.h_last = {h_last.data(), {C * 2, 2}};
  fp.lower_triangular = cs.lower;
  fp.num_threads = cs.threads;
  fp.deterministic = cs.chained;
  seqpar::kernels::cpu::block_scan_forward(fp);

  BlockScanSummaryParams sp;
  sp.dtype = fp.dtype;
  sp.shape = fp.shape;
  sp.A = fp.A;
  sp.b = fp.b;
  sp.M = {M.data(), {C * 4, 4}};
  sp.E = {E.data(), {C * 2, 2}};
  sp.lower_triangular = cs.lower;
  sp.num_threads = cs.threads;
  seqpar::kernels::cpu::block_scan_summary(sp);

  BlockScanBackwardParams bp;
  bp.dtype = fp.dtype;
  bp.shape = fp.shape;
  bp.A = fp.A;
  bp.h = {h.data() + p.lv.last_offset(cs.reverse), p.lv.strides(cs.reverse)};
  bp.h0 = fp.h0;
  if (cs.with_g) bp.grad_h = {p.g.data() + p.lv.last_offset(cs.reverse), p.lv.strides(cs.reverse)};
  if (cs.with_g_last) bp.grad_h_last = {p.g_last.data(), {C * 2, 2}};
  bp.grad_A = {gA.data() + p.lA.last_offset(cs.reverse), p.lA.strides(cs.reverse)};
  bp.grad_b = {gb.data() + p.lv.last_offset(cs.reverse), p.lv.strides(cs.reverse)};
  bp.grad_h0 = {gh0.data(), {C * 2, 2}};
  bp.lower_triangular = cs.lower;
  bp.num_threads = cs.threads;
  bp.deterministic = cs.chained;
  seqpar::kernels::cpu::block_scan_backward(bp);

  double worst = 0;
  auto expect = [&](S got, LD want, const char* name) {
    const double err = double(std::abs(LD(got) - want) / std::max(LD(1), std::abs(want)));
    worst = std::max(worst, std::isnan(err) ? 1e300 : err);
    if (!(err <= tol)) ADD_FAILURE() << what << ": " << name << " " << double(got) << " vs " << double(want);
  };
  for (int64_t b = 0; b < B; ++b)
    for (int64_t ch = 0; ch < C; ++ch) {
      // Forward reference.
      std::vector<LD> hx(T), hy(T);
      LD x = cs.with_h0 ? LD(p.h0[(b * C + ch) * 2]) : 0, y = cs.with_h0 ? LD(p.h0[(b * C + ch) * 2 + 1]) : 0;
      const LD x0 = x, y0 = y;
      for (int64_t i = 0; i < T; ++i) {
        const int64_t t = p.t_of(i);
        const LD nx = p.a(b, t, ch, 0) * x + p.a(b, t, ch, 1) * y + LD(p.b[p.lv.index(b, t, ch, 0)]);
        const LD ny = p.a(b, t, ch, 2) * x + p.a(b, t, ch, 3) * y + LD(p.b[p.lv.index(b, t, ch, 1)]);
        x = nx, y = ny;
        hx[t] = x, hy[t] = y;
        expect(h[p.lv.index(b, t, ch, 0)], x, "h.x");
        expect(h[p.lv.index(b, t, ch, 1)], y, "h.y");
      }
      expect(h_last[(b * C + ch) * 2], x, "h_last.x");
      expect(h_last[(b * C + ch) * 2 + 1], y, "h_last.y");
      // Summary: M h0 + E = the last state, for h0 and for zero.
      const S* m = &M[(b * C + ch) * 4];
      const S* e = &E[(b * C + ch) * 2];
      expect(S(LD(m[0]) * x0 + LD(m[1]) * y0 + LD(e[0])), x, "M h0 + E (x)");
      expect(S(LD(m[2]) * x0 + LD(m[3]) * y0 + LD(e[1])), y, "M h0 + E (y)");
      if (cs.lower) EXPECT_EQ(double(m[1]), 0.0) << what;
      // Backward reference: lam over scan order backwards.
      LD ux = cs.with_g_last ? LD(p.g_last[(b * C + ch) * 2]) : 0;
      LD uy = cs.with_g_last ? LD(p.g_last[(b * C + ch) * 2 + 1]) : 0;
      for (int64_t i = T - 1; i >= 0; --i) {
        const int64_t t = p.t_of(i);
        const LD lx = ux + (cs.with_g ? LD(p.g[p.lv.index(b, t, ch, 0)]) : 0);
        const LD ly = uy + (cs.with_g ? LD(p.g[p.lv.index(b, t, ch, 1)]) : 0);
        const LD px = i > 0 ? hx[p.t_of(i - 1)] : x0, py = i > 0 ? hy[p.t_of(i - 1)] : y0;
        expect(gb[p.lv.index(b, t, ch, 0)], lx, "grad_b.x");
        expect(gb[p.lv.index(b, t, ch, 1)], ly, "grad_b.y");
        expect(gA[p.lA.index(b, t, ch, 0)], lx * px, "grad_A00");
        expect(gA[p.lA.index(b, t, ch, 1)], cs.lower ? 0 : lx * py, "grad_A01");
        expect(gA[p.lA.index(b, t, ch, 2)], ly * px, "grad_A10");
        expect(gA[p.lA.index(b, t, ch, 3)], ly * py, "grad_A11");
        ux = p.a(b, t, ch, 0) * lx + p.a(b, t, ch, 2) * ly;
        uy = p.a(b, t, ch, 1) * lx + p.a(b, t, ch, 3) * ly;
      }
      expect(gh0[(b * C + ch) * 2], ux, "grad_h0.x");
      expect(gh0[(b * C + ch) * 2 + 1], uy, "grad_h0.y");
    }
  EXPECT_LE(worst, tol) << what;
}

// Steps of the longer cases: under qemu (aarch64) a quarter, which keeps every inner loop of
// the neon and sve targets and leaves the look-back tiles (target-independent scheduling) to
// the x86 runs.
#if defined(__aarch64__)
constexpr int64_t kLong = 375;
#else
constexpr int64_t kLong = 1500;
#endif

std::vector<Case> cases() {
  std::vector<Case> out;
  // (B, T, C): channel-inner rows (C >= 16), time-inner (C small), tiles (few groups, long T).
  const int64_t shapes[][3] = {{1, kLong, 64}, {2, 700, 3},   {1, 2 * kLong, 1}, {3, 1, 20},
                               {2, 0, 5},      {5, 257, 2},   {1, kLong, 17}};
  for (const auto& s : shapes)
    for (int threads : {1, 2, 3})
      for (bool rev : {false, true})
        for (bool tm : {false, true}) {
          const bool odd = (s[1] + threads + rev + tm) % 2;
          out.push_back({s[0], s[1], s[2], tm, rev, odd, !odd || tm, odd || rev, tm && rev,
                         threads, odd ? 0.999 : 0.5});
        }
  out.push_back({1, kLong, 64, false, false, true, true, true, false, 2, 1e-3});
  Case chained{1, 2 * kLong, 32, false, false, true, true, true, false, 2, 0.999};
  chained.chained = true;
  out.push_back(chained);
  return out;
}

TEST(CpuBlockScan, EveryPathAgainstTheReference) {
  for (const Case& c : cases()) {
    check_case<double>(c);
    check_case<float>(c);
  }
}

// One sequence long enough for time-inner look-back tiles (a tile is about 1 MiB of input).
// Left out under qemu (scripts/aarch64_check.sh): the tiles are the engine's target-independent
// scheduling, which every x86 target's run covers; the inner loops run in the test above.
TEST(CpuBlockScan, TimeInnerTiles) {
  for (const Case& c : {Case{1, 100000, 1, false, true, true, true, true, true, 2, 0.9999},
                        Case{1, 100000, 1, false, false, true, true, true, false, 3, 0.999}}) {
    check_case<double>(c);
    check_case<float>(c);
  }
}

TEST(CpuBlockScan, ComplexIsRefused) {
  BlockScanForwardParams fp;
  fp.dtype = ScalarKind::kComplex64;
  fp.shape = {1, 1, 1};
  EXPECT_THROW(seqpar::kernels::cpu::block_scan_forward(fp), std::invalid_argument);
}

}  // namespace
