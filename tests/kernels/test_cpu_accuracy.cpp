// Accuracy at long T (docs/accuracy.md): float32 and complex64 scans must not lose accuracy as
// the sequence grows. Each case runs forward, backward and summary at a short and a long T on
// one scheduling path of the engine (contiguous in-register, channel-inner, time-inner; all
// look-back tiled with 2 threads), against a long-double sequential reference on the stored
// inputs, and checks
//   * the error at the long T is within a few roundings of float32 (the output itself is
//     rounded once, 2^-24 relative), and
//   * it is at most 2x the error at the short T (float32 accumulation grows 10-100x here).
// Errors are max |x - ref| / max |ref| per output (the figure docs/accuracy.md reports).
// ctest runs this once per CPU target, like the rest of test_cpu_kernels.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <ostream>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "seqpar/kernels/cpu_scan.h"

namespace {

using seqpar::kernels::ScalarKind;
using LC = std::complex<long double>;

// The decays of issue 13: a running sum, slow decay, and a rotation.
enum class Decay { kOne, kSlow, kRotation };
const char* decay_name(Decay d) {
  return d == Decay::kOne ? "a=1" : (d == Decay::kSlow ? "a=1-1e-4" : "|a|=1 complex");
}

// Which engine mode a shape takes (scan_engine.h).
struct Path {
  const char* name;
  int64_t D;
  bool time_major;
  int64_t short_T, long_T;
};

// Readable parameter values in gtest's output.
void PrintTo(Decay d, std::ostream* os) { *os << decay_name(d); }
void PrintTo(const Path& p, std::ostream* os) { *os << p.name; }

struct Errors {
  double h = 0, h_last = 0, grad_a = 0, grad_b = 0, grad_h0 = 0, summary = 0;
  double worst() const { return std::max({h, h_last, grad_a, grad_b, grad_h0, summary}); }
  std::string str() const {
    char buf[160];
    std::snprintf(buf, sizeof buf, "h %.2e h_last %.2e grad_a %.2e grad_b %.2e grad_h0 %.2e summary %.2e",
                  h, h_last, grad_a, grad_b, grad_h0, summary);
    return buf;
  }
};

// max |x - ref| / max |ref| over a set of values.
struct RelErr {
  long double err = 0, scale = 0;
  void add(LC x, LC ref) {
    err = std::max(err, std::abs(x - ref));
    scale = std::max(scale, std::abs(ref));
  }
  double value() const { return double(scale > 0 ? err / scale : err); }
};

// Runs one case; element i of channel d at step t lives at (t, d) or (d, t) (time_major).
Errors run_case(Decay decay, const Path& path, int64_t T, uint64_t seed) {
  const bool cplx = decay == Decay::kRotation;
  const int64_t D = path.D;
  const int64_t n = T * D;
  const int comps = cplx ? 2 : 1;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> unit(0.f, 1.f), angle(-0.1f, 0.1f);
  std::vector<float> a(n * comps), b(n * comps), g(n * comps), h(n * comps), ga(n * comps),
      gb(n * comps), hl(D * comps), gh0(D * comps), A(D * comps), Bs(D * comps);
  for (int64_t i = 0; i < n; ++i) {
    if (cplx) {
      const float th = angle(rng);
      a[2 * i] = std::cos(th);
      a[2 * i + 1] = std::sin(th);
      b[2 * i] = unit(rng);
      b[2 * i + 1] = unit(rng) - 0.5f;
      g[2 * i] = unit(rng);
      g[2 * i + 1] = unit(rng) - 0.5f;
    } else {
      a[i] = decay == Decay::kOne ? 1.f : 1.f - 1e-4f;
      b[i] = unit(rng);  // positive: the state grows to T (or 1e4) times the inputs
      g[i] = unit(rng);
    }
  }
  const seqpar::kernels::Strides3 st =
      path.time_major ? seqpar::kernels::Strides3{n, 1, T} : seqpar::kernels::Strides3{n, D, 1};
  const seqpar::kernels::Strides2 s2{D, 1};
  const ScalarKind kind = cplx ? ScalarKind::kComplex64 : ScalarKind::kFloat32;

  seqpar::kernels::ScanForwardParams fp;
  fp.dtype = kind;
  fp.shape = {1, T, D};
  fp.a = {a.data(), st};
  fp.b = {b.data(), st};
  fp.h = {h.data(), st};
  fp.h_last = {hl.data(), s2};
  fp.num_threads = 2;
  seqpar::kernels::cpu::scan_forward(fp);
  seqpar::kernels::ScanBackwardParams bp;
  bp.dtype = kind;
  bp.shape = fp.shape;
  bp.a = fp.a;
  bp.h = {h.data(), st};
  bp.grad_h = {g.data(), st};
  bp.grad_a = {ga.data(), st};
  bp.grad_b = {gb.data(), st};
  bp.grad_h0 = {gh0.data(), s2};
  bp.num_threads = 2;
  seqpar::kernels::cpu::scan_backward(bp);
  seqpar::kernels::ScanSummaryParams sp;
  sp.dtype = kind;
  sp.shape = fp.shape;
  sp.a = fp.a;
  sp.b = fp.b;
  sp.A = {A.data(), s2};
  sp.B = {Bs.data(), s2};
  sp.num_threads = 2;
  seqpar::kernels::cpu::scan_summary(sp);

  auto value = [&](const std::vector<float>& v, int64_t idx) -> LC {
    return cplx ? LC(v[2 * idx], v[2 * idx + 1]) : LC(v[idx], 0);
  };
  auto conj = [](LC x) { return std::conj(x); };
  RelErr eh, ehl, ega, egb, egh0, esum;
  std::vector<LC> href(T);
  for (int64_t d = 0; d < D; ++d) {
    auto at = [&](int64_t t) { return path.time_major ? d * T + t : t * D + d; };
    LC s = 0, prod = 1;
    for (int64_t t = 0; t < T; ++t) {
      s = value(a, at(t)) * s + value(b, at(t));
      prod *= value(a, at(t));
      href[t] = s;
      eh.add(value(h, at(t)), s);
    }
    ehl.add(value(hl, d), s);
    esum.add(value(Bs, d), s);  // h0 = 0: the summary's B is h_last
    esum.add(value(A, d), prod);
    // lam_t = g_t + conj(a_{t+1}) lam_{t+1}; grad_a_t = lam_t conj(h_{t-1}); grad_h0 =
    // conj(a_0) lam_0 (scan_params.h).
    LC lam = 0;
    for (int64_t t = T - 1; t >= 0; --t) {
      lam = value(g, at(t)) + (t + 1 < T ? conj(value(a, at(t + 1))) * lam : LC(0));
      egb.add(value(gb, at(t)), lam);
      ega.add(value(ga, at(t)), lam * conj(t > 0 ? href[t - 1] : LC(0)));
    }
    egh0.add(value(gh0, d), conj(value(a, at(0))) * lam);
  }
  return {eh.value(), ehl.value(), ega.value(), egb.value(), egh0.value(), esum.value()};
}

class CpuAccuracy : public testing::TestWithParam<std::tuple<Decay, Path>> {};

TEST_P(CpuAccuracy, ErrorDoesNotGrowWithLength) {
  const auto [decay, path] = GetParam();
  const Errors short_run = run_case(decay, path, path.short_T, 1);
  const Errors long_run = run_case(decay, path, path.long_T, 2);
  // Each output is rounded to float32 once (2^-24 = 6.0e-8 of its own magnitude, at most that
  // of the largest); grad_a is a product of two rounded values and complex outputs have two
  // parts: 3 roundings is the bound, the error float32 accumulation reaches here is 1e-6..1e-5.
  const double bound = 3 * 0x1p-24;
  EXPECT_LT(long_run.worst(), bound) << decay_name(decay) << " " << path.name << " T="
                                     << path.long_T << ": " << long_run.str();
  // Growth with T: the long run within 2x of the short one (plus one rounding, as both can be
  // a fraction of an ulp).
  EXPECT_LT(long_run.worst(), 2 * short_run.worst() + 0x1p-24)
      << decay_name(decay) << " " << path.name << " T=" << path.short_T << ": "
      << short_run.str() << "; T=" << path.long_T << ": " << long_run.str();
}

std::string accuracy_name(const testing::TestParamInfo<std::tuple<Decay, Path>>& info) {
  const Decay d = std::get<0>(info.param);
  return std::string(d == Decay::kOne ? "one" : (d == Decay::kSlow ? "slow" : "rotation")) +
         "_" + std::get<1>(info.param).name;
}

// Lengths: the long runs have tens to hundreds of look-back tiles (1 MiB of input each).
const Path kPaths[] = {
    {"contiguous", 1, true, 1 << 14, 1 << 22},
    {"channel_inner", 16, false, 1 << 12, 1 << 18},
    {"time_inner", 3, false, 1 << 12, 1 << 20},
};

INSTANTIATE_TEST_SUITE_P(LongSequences, CpuAccuracy,
                         testing::Combine(testing::Values(Decay::kOne, Decay::kSlow,
                                                          Decay::kRotation),
                                          testing::ValuesIn(kPaths)),
                         accuracy_name);

}  // namespace
