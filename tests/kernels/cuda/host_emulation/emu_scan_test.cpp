// Runs the CUDA scan kernel (scan_tile_kernel, planned by scan_plan.h exactly as the real
// launcher does) on the host emulator (emu_cuda.h) and compares forward, backward and summary
// with a double-precision reference, for every element type and layout: time-contiguous with
// and without 128-bit loads (including a misaligned start, i.e. a non-zero vector phase),
// channel-contiguous with 8 and 32 channels per CTA, general strides, reverse, h0, T = 1, and
// a 40-tile sequence. Exit status 1 on any failure. Modes: (none), quick, stress. Used by scripts/cuda_build_check.sh:
//   g++ -std=c++17 -O1 -I<cuda>/include -I<cuda>/include/cccl -Ikernels/cuda
//       -Itests/kernels/cuda/host_emulation -Ikernels/include tests/kernels/cuda/host_emulation/emu_scan_test.cpp && ./a.out [quick]
#include "emu_cuda.h"
#include "scan_kernel.cuh"
#include "scan_launch.cuh"
#include "scan_plan.h"
#include <complex>
#include <cstdio>
#include <random>
#include <string>
#include <cmath>

using namespace seqpar::kernels;
using namespace seqpar::kernels::cuda::detail;
using cd = std::complex<double>;

static std::mt19937_64 rng(42);
static double downgrade_p = 0.7;
static bool concurrent = false;  // run through the real launch path (emu::launch)
static bool deterministic = false;
static long op_count = 0;
static int failures = 0;

template <class S> cd to_cd(S x) { return cd(double(to_acc(x)), 0); }
template <> cd to_cd<float2>(float2 x) { return cd(x.x, x.y); }
template <class S> S from_cd(cd v) {
  if constexpr (std::is_same_v<S, float2>) return make_float2(float(v.real()), float(v.imag()));
  else if constexpr (std::is_same_v<S, double>) return v.real();
  else return from_acc<S>(float(v.real()));
}
template <class S> constexpr bool is_complex() { return std::is_same_v<S, float2>; }

template <class S, OpKind kOp, int kCols, bool kVec>
void run_kernel(KernelArgs args) {
  using M = Map<typename Traits<S>::Acc>;
  constexpr int K = items_per_thread<S, kOp, kCols>();
  const int64_t tiles = plan_tiles<S, kCols, kOp>(args);
  std::vector<int> flags(tiles + 1, 0);
  std::vector<M> aggs(tiles * kCols), incls(tiles * kCols);
  for (auto& m : aggs) { std::memset(&m, 0xff, sizeof(M)); }  // garbage: NaN
  for (auto& m : incls) { std::memset(&m, 0xff, sizeof(M)); }
  args.flags = flags.data(); args.tile_counter = reinterpret_cast<unsigned*>(&flags[tiles]);
  args.aggregates = aggs.data(); args.inclusives = incls.data();
  std::uniform_real_distribution<double> u(0, 1);
  for (int64_t t = 0; t < tiles; ++t) {
    emu::run_block(threads_for<kOp>(), [&] { scan_tile_kernel<S, kOp, kCols, kVec, K, threads_for<kOp>()>(args); });
    // Same index mapping as the kernel: column groups fastest; scratch per group.
    const int64_t groups = args.batch * args.channel_blocks;
    const int64_t j = t / groups, slot = (t - j * groups) * args.time_tiles + j;
    if (j > 0 && flags[slot] == kFlagInclusive && u(rng) < downgrade_p) flags[slot] = kFlagAggregate;
  }
}

template <class S, OpKind kOp>
void run_layout(Layout layout, const KernelArgs& a) {
  switch (layout) {
    case Layout::kChannels32: return run_kernel<S, kOp, 32, false>(a);
    case Layout::kChannels8: return run_kernel<S, kOp, 8, false>(a);
    case Layout::kTimeVector: return run_kernel<S, kOp, 1, true>(a);
    case Layout::kTimeScalar: return run_kernel<S, kOp, 1, false>(a);
  }
}
// Runs one op: in tile order with flag downgrades (run_layout), or through the real launcher
// (launch_forward/backward/summary: scratch layout, memset, chaining choice, emu::launch),
// alternating the caller-workspace and per-call-allocation paths; a caller workspace of
// exactly workspace_*() bytes must not cause an allocation (checks the sizing).
template <class S, OpKind kOp, class P>
void run_op(const P& params) {
  auto plan = [&] {
    if constexpr (kOp == OpKind::kForward) return plan_forward<S>(params);
    else if constexpr (kOp == OpKind::kBackward) return plan_backward<S>(params);
    else return plan_summary<S>(params);
  };
  if (!concurrent) {
    const Plan p = plan();
    return run_layout<S, kOp>(p.layout, p.args);
  }
  size_t bytes;
  if constexpr (kOp == OpKind::kForward) bytes = workspace_forward<S>(params);
  else if constexpr (kOp == OpKind::kBackward) bytes = workspace_backward<S>(params);
  else bytes = workspace_summary<S>(params);
  const bool caller = (op_count++ % 2) == 0 && bytes > 0;
  void* ws = caller ? std::aligned_alloc(256, (bytes + 255) / 256 * 256) : nullptr;
  const long before = emu::mallocs;
  int rc;
  if constexpr (kOp == OpKind::kForward) rc = launch_forward<S>(params, nullptr, Workspace{ws, bytes});
  else if constexpr (kOp == OpKind::kBackward) rc = launch_backward<S>(params, nullptr, Workspace{ws, bytes});
  else rc = launch_summary<S>(params, nullptr, Workspace{ws, bytes});
  if (rc != 0) { std::printf("FAIL launcher returned %d\n", rc); ++failures; }
  if (caller && emu::mallocs != before) {
    std::printf("FAIL a workspace of workspace_*() = %zu bytes was not used (sizing too small)\n", bytes);
    ++failures;
  }
  std::free(ws);
}

const char* layout_name(Layout l) {
  switch (l) { case Layout::kChannels32: return "ch32"; case Layout::kChannels8: return "ch8";
    case Layout::kTimeVector: return "time-vec"; default: return "time-scalar"; }
}

// The layout a run takes: the real launch path fits the plan to the (emulated) device.
const char* shown_layout(const Plan& plan) {
  return layout_name(concurrent ? device_layout(plan) : plan.layout);
}

// A (B, T, D) buffer with a given memory order; returns operand with optional reverse flip.
struct Buf3 {
  std::vector<char> mem; int64_t sb, st, sc; int64_t offset;  // offset in elements
};
enum class Mem { kChannels, kTime, kStrided, kTimeMisaligned, kTimeOffset };
template <class S> Buf3 make_buf(int64_t B, int64_t T, int64_t D, Mem m) {
  Buf3 b; int64_t n;
  b.offset = 0;
  switch (m) {
    case Mem::kChannels: b.sc = 1; b.st = D; b.sb = T * D; n = B * T * D; break;
    case Mem::kTime: b.st = 1; b.sc = T; b.sb = T * D; n = B * T * D; break;
    case Mem::kTimeMisaligned: b.st = 1; b.sc = T + 1; b.sb = (T + 1) * D; n = B * (T + 1) * D + 1; b.offset = 1; break;
    case Mem::kTimeOffset: b.st = 1; b.sc = (T + 3 + 7) / 8 * 8; b.sb = b.sc * D; n = B * b.sb + 8; b.offset = 3; break;
    default: b.sc = 3; b.st = 3 * D + 1; b.sb = (3 * D + 1) * T + 2; n = b.sb * B; break;
  }
  b.mem.assign((n + 16) * sizeof(S) + 64, 0);
  return b;
}
template <class S> S* base(Buf3& b) {
  uintptr_t p = reinterpret_cast<uintptr_t>(b.mem.data());
  p = (p + 63) / 64 * 64;
  return reinterpret_cast<S*>(p) + b.offset;
}
template <class S> S& at(Buf3& b, int64_t i, int64_t t, int64_t c) { return base<S>(b)[i * b.sb + t * b.st + c * b.sc]; }
template <class S> ConstOperand3 cop(Buf3& b, int64_t T, bool rev) {
  ConstOperand3 o; o.data = base<S>(b); o.stride = {b.sb, b.st, b.sc};
  if (rev) { o.data = base<S>(b) + (T - 1) * b.st; o.stride.time = -b.st; }
  return o;
}
template <class S> Operand3 op(Buf3& b, int64_t T, bool rev) { auto c = cop<S>(b, T, rev); return {const_cast<void*>(c.data), c.stride}; }
// element t of a walk-ordered params operand
template <class S> S get(const ConstOperand3& o, int64_t i, int64_t t, int64_t c) {
  return static_cast<const S*>(o.data)[i * o.stride.batch + t * o.stride.time + c * o.stride.channel];
}

void report(const std::string& name, double err, double tol) {
  bool ok = err <= tol && std::isfinite(err);
  if (!ok) ++failures;
  std::printf("%-4s %-70s max rel err %.3g (tol %.3g)\n", ok ? "ok" : "FAIL", name.c_str(), err, tol);
}

template <class S> double tol_of() {
  if constexpr (std::is_same_v<S, double>) return 1e-11;
  if constexpr (std::is_same_v<S, float> || std::is_same_v<S, float2>) return 2e-5;
  if constexpr (std::is_same_v<S, __half>) return 4e-3;
  return 3e-2;
}

template <class S> void fill(Buf3& b, int64_t B, int64_t T, int64_t D, bool gate) {
  std::uniform_real_distribution<double> u(0.5, 1.0), n(-1, 1);
  for (int64_t i = 0; i < B; ++i) for (int64_t t = 0; t < T; ++t) for (int64_t c = 0; c < D; ++c) {
    cd v = gate ? std::polar(u(rng), is_complex<S>() ? 0.3 * n(rng) : 0.0) : cd(n(rng), is_complex<S>() ? n(rng) : 0.0);
    at<S>(b, i, t, c) = from_cd<S>(v);
  }
}

template <class S>
void test_case(const char* tname, int64_t B, int64_t T, int64_t D, Mem mem, bool rev, bool with_h0) {
  Buf3 a = make_buf<S>(B, T, D, mem), bb = make_buf<S>(B, T, D, mem), h = make_buf<S>(B, T, D, mem);
  Buf3 g = make_buf<S>(B, T, D, mem), ga = make_buf<S>(B, T, D, mem), gb = make_buf<S>(B, T, D, mem);
  fill<S>(a, B, T, D, true); fill<S>(bb, B, T, D, false); fill<S>(g, B, T, D, false);
  std::vector<S> h0(B * D), hl(B * D), gl(B * D), gh0(B * D), A(B * D), Bv(B * D);
  std::uniform_real_distribution<double> n(-1, 1);
  for (auto& x : h0) x = from_cd<S>(cd(n(rng), is_complex<S>() ? n(rng) : 0));
  for (auto& x : gl) x = from_cd<S>(cd(n(rng), is_complex<S>() ? n(rng) : 0));
  const ScanShape shape{B, T, D};
  // forward
  ScanForwardParams fp; fp.shape = shape; fp.deterministic = deterministic; fp.a = cop<S>(a, T, rev); fp.b = cop<S>(bb, T, rev); fp.h = op<S>(h, T, rev);
  if (with_h0) fp.h0 = {h0.data(), {D, 1}};
  fp.h_last = {hl.data(), {D, 1}};
  Plan plan = plan_forward<S>(fp);
  run_op<S, OpKind::kForward>(fp);
  double err = 0, err_last = 0;
  std::vector<cd> href(B * T * D);
  for (int64_t i = 0; i < B; ++i) for (int64_t c = 0; c < D; ++c) {
    cd s = with_h0 ? to_cd(h0[i * D + c]) : cd(0);
    double scale = 1;
    for (int64_t t = 0; t < T; ++t) {
      s = to_cd(get<S>(fp.a, i, t, c)) * s + to_cd(get<S>(fp.b, i, t, c));
      href[(i * T + t) * D + c] = s;
      scale = std::max(scale, std::abs(s));
      cd got = to_cd(get<S>({fp.h.data, fp.h.stride}, i, t, c));
      err = std::max(err, std::abs(got - s) / std::max(1.0, std::abs(s)));
    }
    err_last = std::max(err_last, std::abs(to_cd(hl[i * D + c]) - s) / std::max(1.0, std::abs(s)));
  }
  char name[200];
  std::snprintf(name, sizeof name, "%s fwd B%ld T%ld D%ld %s%s%s", tname, long(B), long(T), long(D), shown_layout(plan), rev ? " rev" : "", with_h0 ? " h0" : "");
  report(name, std::max(err, err_last), tol_of<S>());
  // backward (uses the kernel's h)
  ScanBackwardParams bp; bp.shape = shape; bp.deterministic = deterministic; bp.a = fp.a; bp.h = {fp.h.data, fp.h.stride};
  if (with_h0) bp.h0 = fp.h0;
  bp.grad_h = cop<S>(g, T, rev); bp.grad_h_last = {gl.data(), {D, 1}};
  bp.grad_a = op<S>(ga, T, rev); bp.grad_b = op<S>(gb, T, rev); bp.grad_h0 = {gh0.data(), {D, 1}};
  plan = plan_backward<S>(bp);
  run_op<S, OpKind::kBackward>(bp);
  err = 0;
  for (int64_t i = 0; i < B; ++i) for (int64_t c = 0; c < D; ++c) {
    cd lam = to_cd(gl[i * D + c]);
    for (int64_t t = T - 1; t >= 0; --t) {
      cd gt = to_cd(get<S>(bp.grad_h, i, t, c));
      lam = (t == T - 1) ? lam + gt : gt + std::conj(to_cd(get<S>(bp.a, i, t + 1, c))) * lam;
      cd hprev = t > 0 ? to_cd(get<S>(bp.h, i, t - 1, c)) : (with_h0 ? to_cd(h0[i * D + c]) : cd(0));
      cd ga_ref = lam * std::conj(hprev);
      cd ga_got = to_cd(get<S>({bp.grad_a.data, bp.grad_a.stride}, i, t, c));
      cd gb_got = to_cd(get<S>({bp.grad_b.data, bp.grad_b.stride}, i, t, c));
      err = std::max(err, std::abs(ga_got - ga_ref) / std::max(1.0, std::abs(ga_ref)));
      err = std::max(err, std::abs(gb_got - lam) / std::max(1.0, std::abs(lam)));
    }
    cd gh0_ref = std::conj(to_cd(get<S>(bp.a, i, 0, c))) * lam;
    err = std::max(err, std::abs(to_cd(gh0[i * D + c]) - gh0_ref) / std::max(1.0, std::abs(gh0_ref)));
  }
  std::snprintf(name, sizeof name, "%s bwd B%ld T%ld D%ld %s%s%s", tname, long(B), long(T), long(D), shown_layout(plan), rev ? " rev" : "", with_h0 ? " h0" : "");
  report(name, err, tol_of<S>() * 2);
  // summary
  ScanSummaryParams sp; sp.shape = shape; sp.deterministic = deterministic; sp.a = fp.a; sp.b = fp.b; sp.A = {A.data(), {D, 1}}; sp.B = {Bv.data(), {D, 1}};
  plan = plan_summary<S>(sp);
  run_op<S, OpKind::kSummary>(sp);
  err = 0;
  for (int64_t i = 0; i < B; ++i) for (int64_t c = 0; c < D; ++c) {
    cd Ar = 1, Br = 0;
    for (int64_t t = 0; t < T; ++t) { cd at_ = to_cd(get<S>(sp.a, i, t, c)); Ar *= at_; Br = at_ * Br + to_cd(get<S>(sp.b, i, t, c)); }
    err = std::max(err, std::abs(to_cd(A[i * D + c]) - Ar) / std::max(1e-30, std::abs(Ar)) * std::min(1.0, std::abs(Ar) * 1e6));
    err = std::max(err, std::abs(to_cd(Bv[i * D + c]) - Br) / std::max(1.0, std::abs(Br)));
  }
  std::snprintf(name, sizeof name, "%s sum B%ld T%ld D%ld %s%s", tname, long(B), long(T), long(D), shown_layout(plan), rev ? " rev" : "");
  report(name, err, tol_of<S>() * 4);
}

// Packed sequences (ScanSegments): batch 1, bounds in walk order, states per segment; forward
// and backward against a per-segment double reference. The tile-order runs (run_layout) do
// not write empty segments' states: the launcher's launch_empty_segments is called for them.
template <class S>
void test_segments(const char* tname, int64_t T, int64_t D, Mem mem, bool rev, bool with_h0,
                   const std::vector<int64_t>& bounds, const char* what) {
  const int64_t N = int64_t(bounds.size()) - 1;
  Buf3 a = make_buf<S>(1, T, D, mem), bb = make_buf<S>(1, T, D, mem), h = make_buf<S>(1, T, D, mem);
  Buf3 g = make_buf<S>(1, T, D, mem), ga = make_buf<S>(1, T, D, mem), gb = make_buf<S>(1, T, D, mem);
  fill<S>(a, 1, T, D, true); fill<S>(bb, 1, T, D, false); fill<S>(g, 1, T, D, false);
  std::vector<S> h0(N * D), hl(N * D), gl(N * D), gh0(N * D);
  std::uniform_real_distribution<double> n(-1, 1);
  for (auto& x : h0) x = from_cd<S>(cd(n(rng), is_complex<S>() ? n(rng) : 0));
  for (auto& x : gl) x = from_cd<S>(cd(n(rng), is_complex<S>() ? n(rng) : 0));
  for (auto& x : hl) x = from_cd<S>(cd(1e4, 0));
  for (auto& x : gh0) x = from_cd<S>(cd(1e4, 0));
  const ScanSegments seg{bounds.data(), N};
  ScanForwardParams fp; fp.shape = {1, T, D}; fp.deterministic = deterministic;
  fp.a = cop<S>(a, T, rev); fp.b = cop<S>(bb, T, rev); fp.h = op<S>(h, T, rev);
  if (with_h0) fp.h0 = {h0.data(), {D, 1}};
  fp.h_last = {hl.data(), {D, 1}};
  fp.segments = seg;
  Plan plan = plan_forward<S>(fp);
  if (T > 0) run_op<S, OpKind::kForward>(fp);
  if (!concurrent || T == 0) launch_empty_segments<S>(state_out(fp.h_last), state_in(fp.h0), seg, D, nullptr);
  double err = 0;
  for (int64_t c = 0; c < D; ++c)
    for (int64_t i = 0; i < N; ++i) {
      cd s = with_h0 ? to_cd(h0[i * D + c]) : cd(0);
      for (int64_t t = bounds[i]; t < bounds[i + 1]; ++t) {
        s = to_cd(get<S>(fp.a, 0, t, c)) * s + to_cd(get<S>(fp.b, 0, t, c));
        const cd got = to_cd(get<S>({fp.h.data, fp.h.stride}, 0, t, c));
        err = std::max(err, std::abs(got - s) / std::max(1.0, std::abs(s)));
      }
      err = std::max(err, std::abs(to_cd(hl[i * D + c]) - s) / std::max(1.0, std::abs(s)));
    }
  char name[200];
  std::snprintf(name, sizeof name, "%s seg fwd T%ld D%ld N%ld %s%s%s %s", tname, long(T), long(D), long(N),
                shown_layout(plan), rev ? " rev" : "", with_h0 ? " h0" : "", what);
  report(name, err, tol_of<S>());
  ScanBackwardParams bp; bp.shape = fp.shape; bp.deterministic = deterministic; bp.a = fp.a;
  bp.h = {fp.h.data, fp.h.stride};
  if (with_h0) bp.h0 = fp.h0;
  bp.grad_h = cop<S>(g, T, rev); bp.grad_h_last = {gl.data(), {D, 1}};
  bp.grad_a = op<S>(ga, T, rev); bp.grad_b = op<S>(gb, T, rev); bp.grad_h0 = {gh0.data(), {D, 1}};
  bp.segments = seg;
  plan = plan_backward<S>(bp);
  if (T > 0) run_op<S, OpKind::kBackward>(bp);
  if (!concurrent || T == 0) launch_empty_segments<S>(state_out(bp.grad_h0), state_in(bp.grad_h_last), seg, D, nullptr);
  err = 0;
  for (int64_t c = 0; c < D; ++c)
    for (int64_t i = 0; i < N; ++i) {
      cd u = to_cd(gl[i * D + c]);  // conj(a_{t+1}) lam_{t+1}, or grad_h_last at the last step
      for (int64_t t = bounds[i + 1] - 1; t >= bounds[i]; --t) {
        const cd lam = to_cd(get<S>(bp.grad_h, 0, t, c)) + u;
        const cd hprev = t > bounds[i] ? to_cd(get<S>(bp.h, 0, t - 1, c)) : (with_h0 ? to_cd(h0[i * D + c]) : cd(0));
        const cd ga_ref = lam * std::conj(hprev);
        err = std::max(err, std::abs(to_cd(get<S>({bp.grad_a.data, bp.grad_a.stride}, 0, t, c)) - ga_ref) / std::max(1.0, std::abs(ga_ref)));
        err = std::max(err, std::abs(to_cd(get<S>({bp.grad_b.data, bp.grad_b.stride}, 0, t, c)) - lam) / std::max(1.0, std::abs(lam)));
        u = std::conj(to_cd(get<S>(bp.a, 0, t, c))) * lam;
      }
      err = std::max(err, std::abs(to_cd(gh0[i * D + c]) - u) / std::max(1.0, std::abs(u)));
    }
  std::snprintf(name, sizeof name, "%s seg bwd T%ld D%ld N%ld %s%s%s %s", tname, long(T), long(D), long(N),
                shown_layout(plan), rev ? " rev" : "", with_h0 ? " h0" : "", what);
  report(name, err, tol_of<S>() * 2);
}

// Bounds: empty segments first, in the middle and last, one-step segments, a start on every
// multiple of `tile` and one step after some, and `random` more at random steps.
std::vector<int64_t> segment_bounds(int64_t T, int64_t tile, int random) {
  std::vector<int64_t> b = {0, 0, 1, 5, 5, 17, 18};
  for (int64_t m = tile; m < T; m += tile) { b.push_back(m); if ((m / tile) % 2) b.push_back(m + 1); }
  std::uniform_int_distribution<int64_t> cut(0, T);
  for (int i = 0; i < random; ++i) b.push_back(cut(rng));
  b.push_back(T); b.push_back(T);
  for (auto& x : b) x = std::min(x, T);
  std::sort(b.begin(), b.end());
  return b;
}

template <class S> void segment_suite(const char* tname, bool quick) {
  // Tiles: 256 threads x 8..16 items along time (2048..4096 steps), 8 or 32 channels x 32..64
  // steps across channels; starts on multiples of 128 hit both, and the 40-tile run the look-back.
  test_segments<S>(tname, 10000, 1, Mem::kTime, false, true, segment_bounds(10000, 1024, 20), "time");
  test_segments<S>(tname, 9001, 2, Mem::kTimeOffset, true, true, segment_bounds(9001, 2048, 5), "phase");
  test_segments<S>(tname, 3000, 40, Mem::kChannels, false, true, segment_bounds(3000, 64, 30), "ch32");
  test_segments<S>(tname, 2000, 5, Mem::kChannels, true, false, segment_bounds(2000, 32, 10), "ch8");
  test_segments<S>(tname, 700, 3, Mem::kStrided, false, true, segment_bounds(700, 100, 5), "strided");
  std::vector<int64_t> each(301);
  for (int64_t t = 0; t <= 300; ++t) each[t] = t;
  test_segments<S>(tname, 300, 3, Mem::kTime, false, true, each, "every step");
  test_segments<S>(tname, 0, 3, Mem::kTime, false, true, {0, 0, 0}, "empty");
  if (!quick) test_segments<S>(tname, 40 * 4096 + 17, 1, Mem::kTime, false, true, segment_bounds(40 * 4096 + 17, 4096, 100), "40 tiles");
}

template <class S> void suite(const char* tname, bool quick) {
  segment_suite<S>(tname, quick);
  test_case<S>(tname, 2, 10000, 3, Mem::kTime, false, true);
  test_case<S>(tname, 2, 10000, 3, Mem::kTime, true, false);
  test_case<S>(tname, 1, 300, 40, Mem::kChannels, false, true);
  test_case<S>(tname, 2, 999, 40, Mem::kChannels, true, true);
  test_case<S>(tname, 2, 2000, 5, Mem::kChannels, false, false);
  test_case<S>(tname, 1, 1500, 5, Mem::kChannels, true, true);
  test_case<S>(tname, 2, 700, 3, Mem::kStrided, false, true);
  test_case<S>(tname, 2, 777, 2, Mem::kTimeMisaligned, true, true);
  test_case<S>(tname, 3, 5, 2, Mem::kTime, false, true);
  test_case<S>(tname, 2, 9001, 2, Mem::kTimeOffset, false, true);
  test_case<S>(tname, 2, 9001, 2, Mem::kTimeOffset, true, true);
  test_case<S>(tname, 1, 4093, 1, Mem::kTime, true, false);
  test_case<S>(tname, 2, 1, 33, Mem::kChannels, true, true);
  if (!quick) test_case<S>(tname, 1, 40 * 4096 + 17, 1, Mem::kTime, false, true);
}

int main(int argc, char** argv) {
  // quick: skip the 40-tile sequences; stress: every finished tile but tile 0 shows only its
  // aggregate, so every look-back walks back to the first tile of its group.
  // concurrent: the real launch path with CTAs on 4 host threads, shuffled start order and
  // random pauses, once in the default mode and once in deterministic mode; fails unless some
  // look-back or chained wait actually found a flag empty.
  const std::string mode = argc > 1 ? argv[1] : "";
  const bool quick = mode == "quick" || mode == "stress" || mode == "concurrent";
  if (mode == "stress") downgrade_p = 1.0;
  if (mode == "concurrent") {
    concurrent = true;
    emu::workers = 4;
    emu::delay_p = 0.05;
  }
  for (int pass = 0; pass < (concurrent ? 2 : 1); ++pass) {
    deterministic = pass == 1;
    suite<float>("f32", quick);
    suite<float2>("c64", quick);
    suite<__nv_bfloat16>("bf16", true);
    if (!concurrent) suite<__half>("f16", true);
    suite<double>("f64", true);
  }
  if (concurrent) {
    std::printf("concurrent: %ld launches, %ld per-call scratch allocations, %ld polls found a flag empty\n",
                long(emu::launches), long(emu::mallocs), long(emu::empty_waits));
    if (emu::empty_waits == 0) { std::printf("FAIL no look-back ever found an empty flag\n"); ++failures; }
  }
  std::printf("%d failures\n", failures);
  return failures ? 1 : 0;
}
