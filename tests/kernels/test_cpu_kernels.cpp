// Tests of kernels/cpu without LibTorch: forward, backward and summary against a long-double
// sequential reference, on every scheduling path the engine has (channel-inner and
// time-inner, untiled and look-back tiled), with odd sizes, reverse (negative time strides),
// padded strides and 1..4 threads.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <complex>
#include <cstring>
#include <stdexcept>
#include <string>
#include <random>
#include <tuple>
#include <vector>

#include "seqpar/kernels/cpu_scan.h"

namespace {

using seqpar::kernels::ScalarKind;
using seqpar::kernels::ScanBackwardParams;
using seqpar::kernels::ScanForwardParams;
using seqpar::kernels::ScanSummaryParams;
using seqpar::kernels::Strides2;
using seqpar::kernels::Strides3;

// A (batch, time, channel) float64 array in one of two layouts, with padding between rows so
// that no stride equals a dense one.
struct Seq {
  int64_t B, T, D;
  bool time_major;  // true: (B, D, T) storage (time contiguous)
  std::vector<double> data;
  Strides3 stride;
  Seq(int64_t b, int64_t t, int64_t d, bool tm) : B(b), T(t), D(d), time_major(tm) {
    const int64_t pad = 3;
    if (tm) {
      stride = {D * (T + pad), 1, T + pad};
    } else {
      stride = {T * (D + pad), D + pad, 1};
    }
    data.assign(std::max<int64_t>(1, B * stride.batch), 0.0);
  }
  double& at(int64_t b, int64_t t, int64_t d) {
    return data[b * stride.batch + t * stride.time + d * stride.channel];
  }
};

struct Case {
  int64_t B, T, D;
  bool time_major, reverse;
  int threads;
};

std::string case_name(const testing::TestParamInfo<Case>& info) {
  const Case& c = info.param;
  return "B" + std::to_string(c.B) + "_T" + std::to_string(c.T) + "_D" + std::to_string(c.D) +
         (c.time_major ? "_tmajor" : "_cmajor") + (c.reverse ? "_rev" : "_fwd") + "_th" +
         std::to_string(c.threads);
}

// Pointer and strides of t = 0 in scan order (reverse: last step, negated time stride).
template <class Op>
Op scan_order(Seq& s, bool reverse) {
  Op op;
  Strides3 st = s.stride;
  double* p = s.data.data();
  if (reverse && s.T > 0) {
    p += (s.T - 1) * st.time;
    st.time = -st.time;
  }
  op.data = p;
  op.stride = st;
  return op;
}

// Forward params over Seq operands in scan order (no h0; float64).
ScanForwardParams forward_params(Seq& a, Seq& b, Seq& h, bool reverse, double* h_last,
                                 int threads) {
  ScanForwardParams fp;
  fp.dtype = ScalarKind::kFloat64;
  fp.shape = {a.B, a.T, a.D};
  fp.a = scan_order<seqpar::kernels::ConstOperand3>(a, reverse);
  fp.b = scan_order<seqpar::kernels::ConstOperand3>(b, reverse);
  fp.h = scan_order<seqpar::kernels::Operand3>(h, reverse);
  fp.h_last = {h_last, {a.D, 1}};
  fp.num_threads = threads;
  return fp;
}

// Backward params for the forward pass fp (same a, h0, threads and determinism).
ScanBackwardParams backward_params(const ScanForwardParams& fp, Seq& h, Seq& g, Seq& ga, Seq& gb,
                                   bool reverse, double* grad_h0) {
  ScanBackwardParams bp;
  bp.dtype = fp.dtype;
  bp.shape = fp.shape;
  bp.a = fp.a;
  bp.h0 = fp.h0;
  bp.h = scan_order<seqpar::kernels::ConstOperand3>(h, reverse);
  bp.grad_h = scan_order<seqpar::kernels::ConstOperand3>(g, reverse);
  bp.grad_a = scan_order<seqpar::kernels::Operand3>(ga, reverse);
  bp.grad_b = scan_order<seqpar::kernels::Operand3>(gb, reverse);
  bp.grad_h0 = {grad_h0, {fp.shape.channels, 1}};
  bp.num_threads = fp.num_threads;
  bp.deterministic = fp.deterministic;
  return bp;
}

class CpuKernels : public testing::TestWithParam<Case> {};

TEST_P(CpuKernels, ForwardBackwardSummaryMatchReference) {
  const Case c = GetParam();
  std::mt19937_64 rng(c.B * 1000003 + c.T * 101 + c.D + c.threads);
  std::uniform_real_distribution<double> ua(0.5, 1.0), ub(-1.0, 1.0);
  Seq a(c.B, c.T, c.D, c.time_major), b(c.B, c.T, c.D, c.time_major),
      h(c.B, c.T, c.D, c.time_major), g(c.B, c.T, c.D, c.time_major),
      ga(c.B, c.T, c.D, c.time_major), gb(c.B, c.T, c.D, c.time_major);
  std::vector<double> h0(c.B * c.D), hl(c.B * c.D), gl(c.B * c.D), gh0(c.B * c.D),
      A(c.B * c.D), Bs(c.B * c.D);
  for (int64_t i = 0; i < c.B; ++i)
    for (int64_t t = 0; t < c.T; ++t)
      for (int64_t d = 0; d < c.D; ++d) {
        a.at(i, t, d) = ua(rng);
        b.at(i, t, d) = ub(rng);
        g.at(i, t, d) = ub(rng);
      }
  for (auto& x : h0) x = ub(rng);
  for (auto& x : gl) x = ub(rng);
  const Strides2 s2{c.D, 1};

  ScanForwardParams fp = forward_params(a, b, h, c.reverse, hl.data(), c.threads);
  fp.h0 = {h0.data(), s2};
  seqpar::kernels::cpu::scan_forward(fp);

  ScanBackwardParams bp = backward_params(fp, h, g, ga, gb, c.reverse, gh0.data());
  bp.grad_h_last = {gl.data(), s2};
  seqpar::kernels::cpu::scan_backward(bp);

  ScanSummaryParams sp;
  sp.dtype = ScalarKind::kFloat64;
  sp.shape = fp.shape;
  sp.a = fp.a;
  sp.b = fp.b;
  sp.A = {A.data(), s2};
  sp.B = {Bs.data(), s2};
  sp.num_threads = c.threads;
  seqpar::kernels::cpu::scan_summary(sp);

  double worst = 0;
  for (int64_t i = 0; i < c.B; ++i)
    for (int64_t d = 0; d < c.D; ++d) {
      // Reference in long double, in scan order.
      std::vector<long double> href(c.T);
      long double state = h0[i * c.D + d], prod = 1;
      for (int64_t k = 0; k < c.T; ++k) {
        const int64_t t = c.reverse ? c.T - 1 - k : k;
        state = a.at(i, t, d) * state + b.at(i, t, d);
        prod *= a.at(i, t, d);
        href[k] = state;
        worst = std::max(worst, double(std::fabs(h.at(i, t, d) - state)));
      }
      worst = std::max(worst, double(std::fabs(hl[i * c.D + d] - state)));
      long double zero_state = 0;
      for (int64_t k = 0; k < c.T; ++k) {
        const int64_t t = c.reverse ? c.T - 1 - k : k;
        zero_state = a.at(i, t, d) * zero_state + b.at(i, t, d);
      }
      worst = std::max(worst, double(std::fabs(Bs[i * c.D + d] - zero_state)));
      worst = std::max(worst, double(std::fabs(A[i * c.D + d] - prod)));
      // Adjoint: lam_k = g_k + a_{k+1} lam_{k+1} in scan order.
      long double lam_next = gl[i * c.D + d], a_next = 1;
      for (int64_t k = c.T - 1; k >= 0; --k) {
        const int64_t t = c.reverse ? c.T - 1 - k : k;
        const long double lam = g.at(i, t, d) + a_next * lam_next;
        const long double hprev = k > 0 ? href[k - 1] : (long double)h0[i * c.D + d];
        worst = std::max(worst, double(std::fabs(gb.at(i, t, d) - lam)));
        worst = std::max(worst, double(std::fabs(ga.at(i, t, d) - lam * hprev)));
        lam_next = lam;
        a_next = a.at(i, t, d);
      }
      const long double gh0_ref = c.T > 0 ? a_next * lam_next : (long double)gl[i * c.D + d];
      worst = std::max(worst, double(std::fabs(gh0[i * c.D + d] - gh0_ref)));
    }
  // |h| stays below ~ 1/(1-0.75) * 1 for these inputs; fp64 rounding over T steps.
  EXPECT_LT(worst, 1e-12 * std::max<int64_t>(1, c.T)) << "max abs error " << worst;
}

std::vector<Case> cases() {
  std::vector<Case> out;
  const std::tuple<int64_t, int64_t, int64_t> shapes[] = {
      {1, 1, 1},      {2, 0, 3},   {3, 37, 5},     {1, 100003, 1}, {2, 20011, 3},
      {1, 9001, 64},  {1, 5003, 67}, {5, 301, 17}, {2, 4099, 16},  {1, 70001, 9},
      // wide rows: whole-row groups walked in descending blocks (1000 = 31 * 32 + 8), and
      // more channels than one group holds (4100 = 4096 + 4)
      {2, 257, 1000}, {1, 129, 4100},
      // several look-back tiles (1 MiB of input each) on every path: one sequence (contiguous
      // or 8 time-inner chains), 3 time-inner lanes, and one row of 300 channels kept whole
      // and shared by the threads through tiles (300 = 9 * 32 + 12)
      {1, 300007, 1}, {1, 120007, 3}, {1, 1031, 300}};
  for (auto [B, T, D] : shapes)
    for (bool tm : {false, true})
      for (bool rev : {false, true})
        for (int th : {1, 2, 4}) out.push_back({B, T, D, tm, rev, th});
  return out;
}

INSTANTIATE_TEST_SUITE_P(AllPaths, CpuKernels, testing::ValuesIn(cases()), case_name);

// Deterministic mode (chained tiles): with 4 threads on shapes that take the look-back tiled
// path, forward and backward are bitwise identical over repeated runs and equal the
// single-thread results up to rounding.
TEST(CpuKernelsDeterministic, RepeatsBitwise) {
  for (auto [B, T, D, tm] : {std::tuple<int64_t, int64_t, int64_t, bool>{1, 300007, 1, true},
                             {1, 9001, 64, false}, {2, 20011, 3, true}}) {
    std::mt19937_64 rng(T);
    std::uniform_real_distribution<double> ua(0.5, 1.0), ub(-1.0, 1.0);
    Seq a(B, T, D, tm), b(B, T, D, tm), h(B, T, D, tm), ga(B, T, D, tm), gb(B, T, D, tm);
    for (int64_t i = 0; i < B; ++i)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t d = 0; d < D; ++d) {
          a.at(i, t, d) = ua(rng);
          b.at(i, t, d) = ub(rng);
        }
    std::vector<double> hl(B * D), gh0(B * D);
    auto run = [&](int threads, bool deterministic) {
      ScanForwardParams fp = forward_params(a, b, h, false, hl.data(), threads);
      fp.deterministic = deterministic;
      seqpar::kernels::cpu::scan_forward(fp);
      // b as the cotangent: any will do
      const ScanBackwardParams bp = backward_params(fp, h, b, ga, gb, false, gh0.data());
      seqpar::kernels::cpu::scan_backward(bp);
      return std::make_tuple(h.data, ga.data, gb.data);
    };
    const auto serial = run(1, false);
    const auto first = run(4, true);
    for (size_t i = 0; i < std::get<0>(first).size(); ++i) {
      ASSERT_NEAR(std::get<0>(first)[i], std::get<0>(serial)[i], 1e-12 * T);
      ASSERT_NEAR(std::get<1>(first)[i], std::get<1>(serial)[i], 1e-12 * T);
    }
    for (int rep = 0; rep < 20; ++rep) {
      const auto again = run(4, true);
      ASSERT_TRUE(std::get<0>(again) == std::get<0>(first)) << "forward differs, rep " << rep;
      ASSERT_TRUE(std::get<1>(again) == std::get<1>(first)) << "grad_a differs, rep " << rep;
      ASSERT_TRUE(std::get<2>(again) == std::get<2>(first)) << "grad_b differs, rep " << rep;
    }
  }
}

// ---- 16- and 32-bit storage on the in-register (time-contiguous) path ----------------------

uint16_t to_bf16(float f) {  // round to nearest even
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
float from_bf16(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
#if defined(__aarch64__)
using Half = __fp16;  // GCC's C++ front end has no _Float16 on aarch64
#else
using Half = _Float16;
#endif
uint16_t to_f16(float f) {
  const Half h = static_cast<Half>(f);
  uint16_t b;
  std::memcpy(&b, &h, 2);
  return b;
}
float from_f16(uint16_t b) {
  Half h;
  std::memcpy(&h, &b, 2);
  return static_cast<float>(h);
}

// The buffers of B time-contiguous sequences of T steps, (batch, time, 1), and of their
// (batch, 1) states; A and Bs (the summary) may be absent.
struct TimeContiguousBuffers {
  void *a, *b, *g, *h, *ga, *gb, *h0, *hl, *gh0, *A = nullptr, *Bs = nullptr;
};

// Forward, backward and (with A) summary on two threads over those buffers, in elements of
// `es` bytes; reverse starts at the last step.
void run_time_contiguous(ScalarKind kind, int64_t B, int64_t T, size_t es, bool reverse,
                         const TimeContiguousBuffers& buf) {
  auto op3 = [&](void* p) {
    seqpar::kernels::Operand3 o;
    o.data = static_cast<char*>(p) + (reverse ? (T - 1) * es : 0);
    o.stride = {T, reverse ? -1 : 1, T};
    return o;
  };
  auto cop3 = [&](void* p) {
    const auto o = op3(p);
    return seqpar::kernels::ConstOperand3{o.data, o.stride};
  };
  ScanForwardParams fp;
  fp.dtype = kind;
  fp.shape = {B, T, 1};
  fp.a = cop3(buf.a);
  fp.b = cop3(buf.b);
  fp.h = op3(buf.h);
  fp.h0 = {buf.h0, {1, 1}};
  fp.h_last = {buf.hl, {1, 1}};
  fp.num_threads = 2;
  seqpar::kernels::cpu::scan_forward(fp);
  ScanBackwardParams bp;
  bp.dtype = kind;
  bp.shape = fp.shape;
  bp.a = fp.a;
  bp.h = cop3(buf.h);
  bp.h0 = {buf.h0, {1, 1}};
  bp.grad_h = cop3(buf.g);
  bp.grad_a = op3(buf.ga);
  bp.grad_b = op3(buf.gb);
  bp.grad_h0 = {buf.gh0, {1, 1}};
  bp.num_threads = 2;
  seqpar::kernels::cpu::scan_backward(bp);
  if (buf.A == nullptr) return;
  seqpar::kernels::ScanSummaryParams sp;
  sp.dtype = kind;
  sp.shape = fp.shape;
  sp.a = fp.a;
  sp.b = fp.b;
  sp.A = {buf.A, {1, 1}};
  sp.B = {buf.Bs, {1, 1}};
  sp.num_threads = 2;
  seqpar::kernels::cpu::scan_summary(sp);
}

// float32, bfloat16 and float16 time-contiguous sequences (the contiguous mode of every target
// that has it; ctest runs this per target), forward and backward in both directions, against
// a long-double reference on the stored inputs. Tolerance: every output is rounded once to
// storage (2^-24, 2^-8, 2^-11 relative), and grad_a = lam * h compounds two such roundings with
// the recurrence's own error (|a| <= 1, about 1/(1 - mean |a|) = 4 steps of memory): a few
// ulps of the storage type, 2e-5 / 2e-2 / 3e-3.
TEST(CpuKernelsStorage, TimeContiguousMatchesReference) {
  const int64_t B = 2, T = 5003;  // odd T: the vector loop has a scalar tail
  for (ScalarKind kind : {ScalarKind::kFloat32, ScalarKind::kBFloat16, ScalarKind::kFloat16}) {
    const bool f32 = kind == ScalarKind::kFloat32;
    const size_t es = f32 ? 4 : 2;
    const double tol = f32 ? 2e-5 : (kind == ScalarKind::kBFloat16 ? 2e-2 : 3e-3);
    auto put = [&](std::vector<char>& buf, int64_t i, double v) {
      if (f32) {
        const float f = float(v);
        std::memcpy(buf.data() + i * 4, &f, 4);
      } else {
        const uint16_t b = kind == ScalarKind::kBFloat16 ? to_bf16(float(v)) : to_f16(float(v));
        std::memcpy(buf.data() + i * 2, &b, 2);
      }
    };
    auto get = [&](const std::vector<char>& buf, int64_t i) -> double {
      if (f32) {
        float f;
        std::memcpy(&f, buf.data() + i * 4, 4);
        return f;
      }
      uint16_t b;
      std::memcpy(&b, buf.data() + i * 2, 2);
      return kind == ScalarKind::kBFloat16 ? from_bf16(b) : from_f16(b);
    };
    for (bool reverse : {false, true}) {
      std::mt19937_64 rng(T + reverse);
      std::uniform_real_distribution<double> ua(0.5, 1.0), ub(-1.0, 1.0);
      std::vector<char> a(B * T * es), b(B * T * es), g(B * T * es), h(B * T * es),
          ga(B * T * es), gb(B * T * es), h0(B * es), hl(B * es), gh0(B * es);
      for (int64_t i = 0; i < B * T; ++i) {
        put(a, i, ua(rng));
        put(b, i, ub(rng));
        put(g, i, ub(rng));
      }
      for (int64_t i = 0; i < B; ++i) put(h0, i, ub(rng));
      run_time_contiguous(kind, B, T, es, reverse,
                          {a.data(), b.data(), g.data(), h.data(), ga.data(), gb.data(),
                           h0.data(), hl.data(), gh0.data()});
      double worst = 0;
      for (int64_t i = 0; i < B; ++i) {
        auto at = [&](int64_t k) { return i * T + (reverse ? T - 1 - k : k); };  // step k
        std::vector<long double> lam(T);
        long double s = get(h0, i);
        for (int64_t k = 0; k < T; ++k) {
          s = get(a, at(k)) * s + get(b, at(k));
          worst = std::max(worst, double(std::fabs(get(h, at(k)) - s) / std::max<long double>(1, std::fabs(s))));
        }
        long double l = 0;
        for (int64_t k = T - 1; k >= 0; --k) {
          l = (k + 1 < T ? get(a, at(k + 1)) * l : 0) + get(g, at(k));
          lam[k] = l;
          const long double hp = k > 0 ? (long double)get(h, at(k - 1)) : (long double)get(h0, i);
          const long double scale = std::max<long double>(1, std::fabs(l));
          worst = std::max(worst, double(std::fabs(get(gb, at(k)) - l) / scale));
          worst = std::max(worst, double(std::fabs(get(ga, at(k)) - l * hp) / (scale * std::max<long double>(1, std::fabs(hp)))));
        }
      }
      EXPECT_LT(worst, tol) << seqpar::kernels::scalar_kind_name(kind) << (reverse ? " reverse" : "");
    }
  }
}

// complex64 time-contiguous sequences: the contiguous mode's complex lanes (real and imaginary
// parts in two vectors, vector_scan.h) on every target that has them, forward, backward and
// summary in both directions, against a long-double reference. Random phases make a missing
// conj in the adjoint show; T odd leaves partial vectors. Tolerance as float32's: each output
// part is rounded once (2^-24) and |a| <= 1 keeps the memory short.
TEST(CpuKernelsStorage, ComplexTimeContiguousMatchesReference) {
  using C = std::complex<float>;
  using LC = std::complex<long double>;
  const int64_t B = 2, T = 5003;
  for (bool reverse : {false, true}) {
    std::mt19937_64 rng(T + 7 + reverse);
    std::uniform_real_distribution<double> mag(0.5, 1.0), phase(-3.14159, 3.14159), ub(-1.0, 1.0);
    std::vector<C> a(B * T), b(B * T), g(B * T), h(B * T), ga(B * T), gb(B * T), h0(B), hl(B),
        gh0(B), A(B), Bs(B);
    for (int64_t i = 0; i < B * T; ++i) {
      a[i] = std::polar(float(mag(rng)), float(phase(rng)));
      b[i] = C(float(ub(rng)), float(ub(rng)));
      g[i] = C(float(ub(rng)), float(ub(rng)));
    }
    for (auto& x : h0) x = C(float(ub(rng)), float(ub(rng)));
    run_time_contiguous(ScalarKind::kComplex64, B, T, sizeof(C), reverse,
                        {a.data(), b.data(), g.data(), h.data(), ga.data(), gb.data(),
                         h0.data(), hl.data(), gh0.data(), A.data(), Bs.data()});
    double worst = 0;
    auto check = [&](C got, LC ref) {
      const long double scale = std::max<long double>(1, std::abs(ref));
      worst = std::max(worst, double(std::abs(LC(got) - ref) / scale));
    };
    for (int64_t i = 0; i < B; ++i) {
      auto at = [&](int64_t k) { return i * T + (reverse ? T - 1 - k : k); };  // step k
      LC s = LC(h0[i]), sum = 0, prod = 1;
      for (int64_t k = 0; k < T; ++k) {
        s = LC(a[at(k)]) * s + LC(b[at(k)]);
        sum = LC(a[at(k)]) * sum + LC(b[at(k)]);
        prod *= LC(a[at(k)]);
        check(h[at(k)], s);
      }
      check(hl[i], s);
      check(Bs[i], sum);
      check(A[i], prod);
      LC lam = 0;
      for (int64_t k = T - 1; k >= 0; --k) {
        lam = (k + 1 < T ? std::conj(LC(a[at(k + 1)])) * lam : LC(0)) + LC(g[at(k)]);
        const LC hp = k > 0 ? LC(h[at(k - 1)]) : LC(h0[i]);
        check(gb[at(k)], lam);
        check(ga[at(k)], lam * std::conj(hp));
      }
      check(gh0[i], std::conj(LC(a[at(0)])) * lam);
    }
    EXPECT_LT(worst, 2e-5) << "complex64" << (reverse ? " reverse" : "");
  }
}

// ---- run-time target choice (cpu_scan.h) -------------------------------------------------

// Under ctest's per-target runs (kernels_target_<t>), the requested target is the one used.
// Where the test knows the CPU (qemu's, scripts/aarch64_check.sh), it also sets
// SEQPAR_EXPECT_TARGET_SUPPORTED: the target must then be supported, not skipped.
// A per-target run (SEQPAR_EXPECT_TARGET: ctest's kernels_target_<t>) on a CPU that cannot run
// that target would rerun the target below it, which has its own run: every test is skipped,
// saying so (RequestedTargetRuns below says the same for itself). Not where the target must run
// (SEQPAR_EXPECT_TARGET_SUPPORTED: the aarch64 runs under qemu).
class TargetEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* want = std::getenv("SEQPAR_EXPECT_TARGET");
    if (want == nullptr || std::getenv("SEQPAR_EXPECT_TARGET_SUPPORTED") != nullptr) return;
    for (const auto& s : seqpar::kernels::cpu::supported_capabilities())
      if (s == want) return;
    GTEST_SKIP() << "this CPU cannot run the '" << want << "' target (its cap runs the target "
                 << "below, tested by that target's own run)";
  }
};
::testing::Environment* const kTargetEnvironment =
    ::testing::AddGlobalTestEnvironment(new TargetEnvironment);

TEST(CpuTargets, RequestedTargetRuns) {
  const char* want = std::getenv("SEQPAR_EXPECT_TARGET");
  if (want == nullptr) GTEST_SKIP() << "not a per-target run";
  const auto supported = seqpar::kernels::cpu::supported_capabilities();
  bool here = false;
  for (const auto& s : supported) here = here || s == want;
  if (!here && std::getenv("SEQPAR_EXPECT_TARGET_SUPPORTED") != nullptr)
    FAIL() << "this CPU was expected to run the '" << want << "' target";
  if (!here) GTEST_SKIP() << "this CPU cannot run the '" << want << "' target";
  EXPECT_EQ(seqpar::kernels::cpu::capability(), want);
}

// Run by ctest with SEQPAR_CPU_CAPABILITY=avx9000: the first use fails and names the
// variable and the accepted values.
TEST(CpuTargets, EnvironmentCapIsValidated) {
  const char* env = std::getenv("SEQPAR_CPU_CAPABILITY");
  if (env == nullptr || std::string(env) != "avx9000") GTEST_SKIP() << "needs SEQPAR_CPU_CAPABILITY=avx9000";
  try {
    (void)seqpar::kernels::cpu::capability();
    FAIL() << "no error for SEQPAR_CPU_CAPABILITY=avx9000";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("SEQPAR_CPU_CAPABILITY='avx9000'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("scalar"), std::string::npos) << msg;
  }
}

// Caps from code: unknown names are refused, a cap above the CPU runs the best target below
// it, the lowest cap runs the lowest compiled target. Restores the cap it found.
TEST(CpuTargets, CapFromCode) {
  namespace cpu = seqpar::kernels::cpu;
  const char* env = std::getenv("SEQPAR_CPU_CAPABILITY");
  if (env != nullptr && std::string(env) == "avx9000") GTEST_SKIP();
  const auto supported = cpu::supported_capabilities();
  ASSERT_FALSE(supported.empty());
  if (supported.front() == "native") GTEST_SKIP() << "a SEQPAR_NATIVE_CPU=ON build has one target";
  const std::string before = cpu::capability();
  EXPECT_THROW(cpu::set_capability_cap("avx9000"), std::invalid_argument);
  EXPECT_EQ(cpu::capability(), before);  // a refused cap changes nothing
#if defined(__x86_64__)
  cpu::set_capability_cap("avx512");
  EXPECT_EQ(cpu::capability(), supported.back());
  cpu::set_capability_cap("scalar");
  EXPECT_EQ(cpu::capability(), "scalar");
#endif
  cpu::set_capability_cap(before);
  EXPECT_EQ(cpu::capability(), before);
}

}  // namespace
