// Packed sequences (ScanSegments) in the CPU scan kernels: forward and backward against a
// long-double sequential reference run segment by segment, for every dtype the scan takes, on
// every scheduling path (channel-inner, time-contiguous vectors, time-inner chains; untiled and
// look-back tiles; one and two threads; chained mode), with empty segments first, in the
// middle and last, segments of one step, segments shorter and longer than a tile, bounds on
// tile cuts and one step either side, 1000 random segments, decays near 0 and near 1,
// strided operands, reverse walks (negated time stride) and absent h0 / h_last / grad_h.
// Part of test_cpu_kernels, so ctest runs it per CPU target.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "seqpar/kernels/cpu_scan.h"

namespace {

using seqpar::kernels::ScalarKind;
using seqpar::kernels::ScanBackwardParams;
using seqpar::kernels::ScanForwardParams;
using seqpar::kernels::Strides2;
using seqpar::kernels::Strides3;
using LC = std::complex<long double>;

#if defined(__aarch64__)
using Half = __fp16;
#else
using Half = _Float16;
#endif

size_t elem_size(ScalarKind k) {
  switch (k) {
    case ScalarKind::kFloat32: return 4;
    case ScalarKind::kFloat64: return 8;
    case ScalarKind::kBFloat16: return 2;
    case ScalarKind::kFloat16: return 2;
    case ScalarKind::kComplex64: return 8;
  }
  return 0;
}

void put(ScalarKind k, char* base, int64_t i, LC v) {
  char* p = base + i * int64_t(elem_size(k));
  switch (k) {
    case ScalarKind::kFloat32: { const float f = float(v.real()); std::memcpy(p, &f, 4); break; }
    case ScalarKind::kFloat64: { const double d = double(v.real()); std::memcpy(p, &d, 8); break; }
    case ScalarKind::kBFloat16: {
      const float f = float(v.real());
      uint32_t u;
      std::memcpy(&u, &f, 4);
      u += 0x7fffu + ((u >> 16) & 1u);
      const uint16_t b = uint16_t(u >> 16);
      std::memcpy(p, &b, 2);
      break;
    }
    case ScalarKind::kFloat16: { const Half h = Half(float(v.real())); std::memcpy(p, &h, 2); break; }
    case ScalarKind::kComplex64: {
      const float f[2] = {float(v.real()), float(v.imag())};
      std::memcpy(p, f, 8);
      break;
    }
  }
}

LC get(ScalarKind k, const char* base, int64_t i) {
  const char* p = base + i * int64_t(elem_size(k));
  switch (k) {
    case ScalarKind::kFloat32: { float f; std::memcpy(&f, p, 4); return f; }
    case ScalarKind::kFloat64: { double d; std::memcpy(&d, p, 8); return d; }
    case ScalarKind::kBFloat16: {
      uint16_t b;
      std::memcpy(&b, p, 2);
      const uint32_t u = uint32_t(b) << 16;
      float f;
      std::memcpy(&f, &u, 4);
      return f;
    }
    case ScalarKind::kFloat16: { Half h; std::memcpy(&h, p, 2); return float(h); }
    case ScalarKind::kComplex64: { float f[2]; std::memcpy(f, p, 8); return LC(f[0], f[1]); }
  }
  return 0;
}

// Error allowed relative to max(1, |reference|): a few roundings of the storage type plus the
// accumulation type's drift over a decay's memory (as the dense tests of test_cpu_kernels.cpp).
double tolerance(ScalarKind k) {
  switch (k) {
    case ScalarKind::kFloat32: return 2e-5;
    case ScalarKind::kFloat64: return 1e-11;
    case ScalarKind::kBFloat16: return 2e-2;
    case ScalarKind::kFloat16: return 4e-3;
    case ScalarKind::kComplex64: return 2e-5;
  }
  return 0;
}

enum class Layout { kChannel, kTime, kStrided };  // unit channel stride / unit time / neither

// One (1, T, C) operand in storage with padded strides.
struct Operand {
  ScalarKind kind;
  int64_t T, C;
  Strides3 st;
  std::vector<char> mem;
  Operand(ScalarKind k, int64_t t, int64_t c, Layout lay) : kind(k), T(t), C(c) {
    if (lay == Layout::kChannel) st = {0, C + 3, 1};
    if (lay == Layout::kTime) st = {0, 1, T + 3};
    if (lay == Layout::kStrided) st = {0, 2 * C + 3, 2};
    mem.assign(((T + 1) * st.time + (C + 1) * st.channel + 1) * elem_size(k), 0);
  }
  int64_t index(int64_t t, int64_t c) const { return t * st.time + c * st.channel; }
  LC at(int64_t t, int64_t c) const { return get(kind, mem.data(), index(t, c)); }
  void set(int64_t t, int64_t c, LC v) { put(kind, mem.data(), index(t, c), v); }
  // Kernel view in walk order: reverse starts at the last step with a negated time stride.
  template <class Op>
  Op view(bool reverse) {
    Op op;
    op.stride = st;
    char* p = mem.data();
    if (reverse && T > 0) {
      p += (T - 1) * st.time * int64_t(elem_size(kind));
      op.stride.time = -st.time;
    }
    op.data = p;
    return op;
  }
  // Walk step k of channel c.
  int64_t walk(int64_t k, bool reverse) const { return reverse ? T - 1 - k : k; }
};

// (rows, C) states with padded rows.
struct States {
  ScalarKind kind;
  int64_t rows, C;
  std::vector<char> mem;
  States(ScalarKind k, int64_t r, int64_t c) : kind(k), rows(r), C(c), mem((r * (c + 1) + 1) * elem_size(k), 0) {}
  Strides2 stride() const { return {C + 1, 1}; }
  LC at(int64_t r, int64_t c) const { return get(kind, mem.data(), r * (C + 1) + c); }
  void set(int64_t r, int64_t c, LC v) { put(kind, mem.data(), r * (C + 1) + c, v); }
};

struct SegCase {
  ScalarKind kind = ScalarKind::kFloat32;
  int64_t T = 0, C = 1;
  Layout layout = Layout::kChannel;
  std::vector<int64_t> bounds;
  int threads = 1;
  bool h0 = true, last = true, grad_h = true, reverse = false, deterministic = false;
  double decay_lo = 0.5, decay_hi = 1.0;
  std::string what;
};

std::string describe(const SegCase& c) {
  const char* lay = c.layout == Layout::kChannel ? "chan" : c.layout == Layout::kTime ? "time" : "strided";
  return std::string(seqpar::kernels::scalar_kind_name(c.kind)) + " T=" + std::to_string(c.T) +
         " C=" + std::to_string(c.C) + " " + lay + " segments=" +
         std::to_string(c.bounds.size() - 1) + " threads=" + std::to_string(c.threads) +
         (c.h0 ? " h0" : "") + (c.last ? " last" : "") + (c.grad_h ? "" : " no-grad_h") +
         (c.reverse ? " reverse" : "") + (c.deterministic ? " deterministic" : "") +
         " decays [" + std::to_string(c.decay_lo) + ", " + std::to_string(c.decay_hi) + "] " + c.what;
}

void check(const SegCase& c) {
  SCOPED_TRACE(describe(c));
  const ScalarKind k = c.kind;
  const int64_t T = c.T, C = c.C, N = int64_t(c.bounds.size()) - 1;
  const bool cplx = k == ScalarKind::kComplex64;
  std::mt19937_64 rng(T * 7919 + C * 31 + N);
  std::uniform_real_distribution<double> ua(c.decay_lo, c.decay_hi), ub(-1.0, 1.0),
      ph(-3.14159, 3.14159);
  auto coef = [&]() -> LC { return cplx ? LC(std::polar(ua(rng), ph(rng))) : LC(ua(rng)); };
  auto val = [&]() -> LC { return cplx ? LC(ub(rng), ub(rng)) : LC(ub(rng)); };
  Operand a(k, T, C, c.layout), b(k, T, C, c.layout), h(k, T, C, c.layout), g(k, T, C, c.layout),
      ga(k, T, C, c.layout), gb(k, T, C, c.layout);
  States h0(k, N, C), hl(k, N, C), gl(k, N, C), gh0(k, N, C);
  // Walk order: step k of the kernel is physical step a.walk(k).
  for (int64_t t = 0; t < T; ++t)
    for (int64_t ch = 0; ch < C; ++ch) {
      a.set(t, ch, coef());
      b.set(t, ch, val());
      g.set(t, ch, val());
    }
  for (int64_t r = 0; r < N; ++r)
    for (int64_t ch = 0; ch < C; ++ch) {
      h0.set(r, ch, val());
      gl.set(r, ch, val());
      hl.set(r, ch, LC(1e30));   // must be overwritten
      gh0.set(r, ch, LC(1e30));
    }
  seqpar::kernels::ScanSegments seg{c.bounds.data(), N};

  ScanForwardParams fp;
  fp.dtype = k;
  fp.shape = {1, T, C};
  fp.a = a.view<seqpar::kernels::ConstOperand3>(c.reverse);
  fp.b = b.view<seqpar::kernels::ConstOperand3>(c.reverse);
  fp.h = h.view<seqpar::kernels::Operand3>(c.reverse);
  if (c.h0) fp.h0 = {h0.mem.data(), h0.stride()};
  if (c.last) fp.h_last = {hl.mem.data(), hl.stride()};
  fp.segments = seg;
  fp.num_threads = c.threads;
  fp.deterministic = c.deterministic;
  seqpar::kernels::cpu::scan_forward(fp);

  ScanBackwardParams bp;
  bp.dtype = k;
  bp.shape = fp.shape;
  bp.a = fp.a;
  bp.h = h.view<seqpar::kernels::ConstOperand3>(c.reverse);
  bp.h0 = fp.h0;
  if (c.grad_h) bp.grad_h = g.view<seqpar::kernels::ConstOperand3>(c.reverse);
  if (c.last) bp.grad_h_last = {gl.mem.data(), gl.stride()};
  bp.grad_a = ga.view<seqpar::kernels::Operand3>(c.reverse);
  bp.grad_b = gb.view<seqpar::kernels::Operand3>(c.reverse);
  if (c.h0) bp.grad_h0 = {gh0.mem.data(), gh0.stride()};
  bp.segments = seg;
  bp.num_threads = c.threads;
  bp.deterministic = c.deterministic;
  seqpar::kernels::cpu::scan_backward(bp);

  const double tol = tolerance(k);
  double worst_h = 0, worst_hl = 0, worst_gb = 0, worst_ga = 0, worst_gh0 = 0;
  auto rel = [](LC x, LC ref) {
    return double(std::abs(x - ref) / std::max<long double>(1, std::abs(ref)));
  };
  for (int64_t ch = 0; ch < C; ++ch) {
    auto A = [&](int64_t s) { return a.at(a.walk(s, c.reverse), ch); };
    auto H = [&](int64_t s) { return h.at(h.walk(s, c.reverse), ch); };
    for (int64_t i = 0; i < N; ++i) {
      const int64_t s0 = c.bounds[i], s1 = c.bounds[i + 1];
      const LC init = c.h0 ? h0.at(i, ch) : LC(0);
      LC s = init;
      for (int64_t t = s0; t < s1; ++t) {
        s = A(t) * s + b.at(b.walk(t, c.reverse), ch);
        worst_h = std::max(worst_h, rel(H(t), s));
      }
      if (c.last) worst_hl = std::max(worst_hl, rel(hl.at(i, ch), s));
      // Adjoint, on the stored h (as autograd would pass it).
      LC lam = c.last ? gl.at(i, ch) : LC(0);
      LC u = lam;  // conj(a_{t+1}) lam_{t+1}, or grad_h_last at the segment's last step
      for (int64_t t = s1 - 1; t >= s0; --t) {
        lam = (c.grad_h ? g.at(g.walk(t, c.reverse), ch) : LC(0)) + u;
        const LC hp = t > s0 ? H(t - 1) : init;
        const long double scale = std::max<long double>(1, std::abs(lam));
        worst_gb = std::max(worst_gb, double(std::abs(gb.at(gb.walk(t, c.reverse), ch) - lam) / scale));
        worst_ga = std::max(worst_ga, double(std::abs(ga.at(ga.walk(t, c.reverse), ch) - lam * std::conj(hp)) /
                                             (scale * std::max<long double>(1, std::abs(hp)))));
        u = std::conj(A(t)) * lam;
      }
      if (c.h0) worst_gh0 = std::max(worst_gh0, rel(gh0.at(i, ch), u));
    }
  }
  EXPECT_LT(worst_h, tol) << "h";
  EXPECT_LT(worst_hl, tol) << "h_last";
  EXPECT_LT(worst_gb, tol) << "grad_b";
  EXPECT_LT(worst_ga, 2 * tol) << "grad_a";
  EXPECT_LT(worst_gh0, tol) << "grad_h0";
}

const ScalarKind kKinds[] = {ScalarKind::kFloat32, ScalarKind::kFloat64, ScalarKind::kBFloat16,
                             ScalarKind::kFloat16, ScalarKind::kComplex64};

// Bounds with empty segments first, in the middle and last, a one-step segment, short and
// long segments, and a start on every multiple of `tile` (and one step either side of some).
std::vector<int64_t> mixed_bounds(int64_t T, int64_t tile) {
  std::vector<int64_t> b = {0, 0, 1, 5, 5, 5, 17, 18, 300, 301};
  for (int64_t m = tile; m < T; m += tile) {
    b.push_back(m);
    if ((m / tile) % 2 == 1) {
      b.push_back(std::min(T, m + 1));
    } else if (m - 1 > b.back()) {
      b.insert(b.end() - 1, m - 1);
    }
  }
  b.push_back(T - 1);
  b.push_back(T);
  b.push_back(T);
  std::sort(b.begin(), b.end());
  for (auto& x : b) x = std::min(x, T);
  return b;
}

std::vector<int64_t> random_bounds(int64_t T, int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> cut(0, T);
  std::vector<int64_t> b(n - 1);
  for (auto& x : b) x = cut(rng);
  b.push_back(0);
  b.push_back(T);
  std::sort(b.begin(), b.end());
  return b;
}

// Every dtype, layout and thread count on a mixed set of bounds. T = 5000 with 64 channels
// along the channels gives three 2048-step tiles (float32) with two threads; the bounds also
// sit on multiples of 512 (time-inner blocks) and 1024.
TEST(CpuKernelsSegments, EveryDtypeLayoutAndThreadCount) {
  for (ScalarKind k : kKinds)
    for (Layout lay : {Layout::kChannel, Layout::kTime, Layout::kStrided})
      for (int64_t C : {1, 3, 64})
        for (int threads : {1, 2}) {
          SegCase c;
          c.kind = k;
          c.T = 5000;
          c.C = C;
          c.layout = lay;
          c.threads = threads;
          c.bounds = mixed_bounds(c.T, C == 64 ? 1024 : 512);
          c.h0 = (C + threads) % 3 != 0;
          c.last = (C + threads) % 3 != 1;
          c.reverse = threads == 2 && C == 3;
          check(c);
        }
}

// Long single sequences along time, where the contiguous mode tiles time: 2^18 + 7 steps hold
// two float32 tiles of 131072 steps (and four complex64 ones, 65536 steps); bounds on those
// cuts, one step either side, and short segments around them.
TEST(CpuKernelsSegments, TimeContiguousTiles) {
  for (ScalarKind k : kKinds)
    for (int threads : {1, 2})
      for (bool reverse : {false, true}) {
        SegCase c;
        c.kind = k;
        c.T = (int64_t(1) << 18) + 7;
        c.C = 1;
        c.layout = Layout::kTime;
        c.threads = threads;
        c.reverse = reverse;
        c.bounds = mixed_bounds(c.T, 65536);
        check(c);
      }
}

// 1000 segments of random lengths (some empty) over 2^16 steps, decays near 0 and near 1,
// channels 1, 3 and 64 in every layout, one and two threads, chained (deterministic) tiles.
TEST(CpuKernelsSegments, ThousandRandomSegments) {
  const int64_t T = int64_t(1) << 16;
  int n = 0;
  for (ScalarKind k : {ScalarKind::kFloat32, ScalarKind::kFloat64, ScalarKind::kBFloat16})
    for (Layout lay : {Layout::kChannel, Layout::kTime, Layout::kStrided})
      for (int64_t C : {1, 3, 64})
        for (int threads : {1, 2}) {
          if (C == 64 && lay != Layout::kChannel && threads == 1) continue;  // time
          ++n;
          SegCase c;
          c.kind = k;
          c.T = T;
          c.C = C;
          c.layout = lay;
          c.threads = threads;
          c.bounds = random_bounds(T, 1000, 17 + n);
          if (n % 3 == 0) {
            c.decay_lo = 0.0;
            c.decay_hi = 1e-3;
          } else if (n % 3 == 1) {
            c.decay_lo = 0.999;
            c.decay_hi = 1.0;
          }
          c.deterministic = threads == 2 && n % 4 == 0;
          c.grad_h = n % 5 != 0;
          check(c);
        }
}

// Wide rows: 4097 channels (a 4096-lane group that runs two steps per pass, and a one-lane
// group; with two threads 2048-lane groups), segments of odd lengths so that pieces end on
// either step of a pair.
TEST(CpuKernelsSegments, WideRows) {
  for (ScalarKind k : {ScalarKind::kFloat32, ScalarKind::kComplex64})
    for (int threads : {1, 2})
      for (bool reverse : {false, true}) {
        SegCase c;
        c.kind = k;
        c.T = 301;
        c.C = 4097;
        c.layout = Layout::kChannel;
        c.threads = threads;
        c.reverse = reverse;
        c.bounds = {0, 0, 1, 4, 4, 37, 38, 200, 301, 301};
        check(c);
      }
}

// Degenerate bounds: every segment empty (T = 0), one segment (equals the dense scan), every
// step its own segment.
TEST(CpuKernelsSegments, DegenerateBounds) {
  for (ScalarKind k : kKinds) {
    SegCase c;
    c.kind = k;
    c.C = 64;
    c.threads = 2;
    c.T = 0;
    c.bounds = {0, 0, 0};
    check(c);
    c.T = 4099;
    c.bounds = {0, c.T};
    check(c);
    c.T = 2500;
    c.bounds.clear();
    for (int64_t t = 0; t <= c.T; ++t) c.bounds.push_back(t);
    check(c);
    c.C = 1;
    c.layout = Layout::kTime;
    check(c);
  }
}

}  // namespace
