// Torch-free check of the CUDA scan on a real GPU: correctness against a double-precision
// host reference, a look-back stress with run-to-run comparison, and a bandwidth benchmark
// against a device copy of the same bytes. It calls the public entry points (cuda_scan.h), so
// it exercises the real launch path, scratch layout, workspace sizing and both scratch
// sources (caller workspace and per-call cudaMallocAsync). It needs nvcc and a GPU, nothing
// else; scripts/gpu_session.sh builds and runs it first, before LibTorch is involved, so that a
// broken PyTorch build on the GPU machine cannot hide a kernel result.
//
//   scan_gpu_check check    [--json F]   every dtype x layout x op, edge shapes; exit 1 on error
//   scan_gpu_check sanitize              a few small multi-tile cases (for compute-sanitizer)
//   scan_gpu_check stress   [--json F]   hundreds of calls, two streams, deep look-back chains
//   scan_gpu_check bench    [--json F]   GB/s and % of copy bandwidth (CUDA-graph timing)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "seqpar/kernels/cuda_scan.h"

using namespace seqpar::kernels;
namespace kc = seqpar::kernels::cuda;
using cd = std::complex<double>;

#define CK(x)                                                                                 \
  do {                                                                                        \
    cudaError_t e_ = (x);                                                                     \
    if (e_ != cudaSuccess) {                                                                  \
      std::fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorName(e_), __FILE__,   \
                   __LINE__, cudaGetErrorString(e_));                                         \
      std::exit(2);                                                                           \
    }                                                                                         \
  } while (0)

static FILE* g_json = nullptr;
static int g_failures = 0;
static bool g_det = false;  // run the scans in deterministic mode

// ---- element types on the host ----------------------------------------------------------
struct DType {
  ScalarKind kind;
  const char* name;
  size_t size;
  double eps_store;  // unit roundoff of the storage type
  double eps_acc;    // unit roundoff of the accumulation type
  bool complex;
};
static const DType kF32{ScalarKind::kFloat32, "float32", 4, 0x1p-24, 0x1p-24, false};
static const DType kF64{ScalarKind::kFloat64, "float64", 8, 0x1p-53, 0x1p-53, false};
static const DType kBF16{ScalarKind::kBFloat16, "bfloat16", 2, 0x1p-8, 0x1p-24, false};
static const DType kF16{ScalarKind::kFloat16, "float16", 2, 0x1p-11, 0x1p-24, false};
static const DType kC64{ScalarKind::kComplex64, "complex64", 8, 0x1p-24, 0x1p-24, true};

static void store(const DType& t, void* p, cd v) {
  switch (t.kind) {
    case ScalarKind::kFloat32: *static_cast<float*>(p) = float(v.real()); break;
    case ScalarKind::kFloat64: *static_cast<double*>(p) = v.real(); break;
    case ScalarKind::kBFloat16: *static_cast<__nv_bfloat16*>(p) = __float2bfloat16(float(v.real())); break;
    case ScalarKind::kFloat16: *static_cast<__half*>(p) = __float2half(float(v.real())); break;
    case ScalarKind::kComplex64: {
      float2 f{float(v.real()), float(v.imag())};
      std::memcpy(p, &f, 8);
      break;
    }
  }
}
static cd load(const DType& t, const void* p) {
  switch (t.kind) {
    case ScalarKind::kFloat32: return *static_cast<const float*>(p);
    case ScalarKind::kFloat64: return *static_cast<const double*>(p);
    case ScalarKind::kBFloat16: return double(__bfloat162float(*static_cast<const __nv_bfloat16*>(p)));
    case ScalarKind::kFloat16: return double(__half2float(*static_cast<const __half*>(p)));
    case ScalarKind::kComplex64: {
      float2 f;
      std::memcpy(&f, p, 8);
      return cd(f.x, f.y);
    }
  }
  return 0;
}

// ---- operands: a host mirror and a device buffer with the same layout ---------------------
enum class Mem { kChannels, kTime, kTimeOffset, kStrided };
static const char* mem_name(Mem m) {
  switch (m) {
    case Mem::kChannels: return "channels";
    case Mem::kTime: return "time";
    case Mem::kTimeOffset: return "time+1";
    case Mem::kStrided: return "strided";
  }
  return "?";
}

struct Buf {
  const DType* t = nullptr;
  std::vector<char> host;
  char* dev = nullptr;
  size_t bytes = 0;
  int64_t offset = 0;       // elements from the allocation start to logical (0, 0, 0)
  Strides3 s3;              // strides of logical (b, walk step, c); time may be negative
  Strides2 s2;
  ~Buf() {
    if (dev) cudaFree(dev);
  }
  size_t at(int64_t b, int64_t u, int64_t c) const {
    return size_t(offset + b * s3.batch + u * s3.time + c * s3.channel) * t->size;
  }
  size_t at2(int64_t b, int64_t c) const { return size_t(offset + b * s2.batch + c * s2.channel) * t->size; }
  cd get(int64_t b, int64_t u, int64_t c) const { return load(*t, host.data() + at(b, u, c)); }
  void set(int64_t b, int64_t u, int64_t c, cd v) { store(*t, host.data() + at(b, u, c), v); }
  void upload() { CK(cudaMemcpy(dev, host.data(), bytes, cudaMemcpyHostToDevice)); }
  void download() { CK(cudaMemcpy(host.data(), dev, bytes, cudaMemcpyDeviceToHost)); }
  const void* cptr() const { return dev + size_t(offset) * t->size; }
  void* ptr() const { return dev + size_t(offset) * t->size; }
};

// (B, T, D) operand in memory order `m`; reverse makes walk step u the time step T-1-u.
static void make3(Buf& x, const DType& t, int64_t B, int64_t T, int64_t D, Mem m, bool reverse) {
  x.t = &t;
  int64_t sb, st, sc, n, off = 0;
  switch (m) {
    case Mem::kChannels: sc = 1; st = D; sb = T * D; n = B * T * D; break;
    case Mem::kTime: st = 1; sc = T; sb = T * D; n = B * T * D; break;
    case Mem::kTimeOffset: {  // one element in, rows padded to 16 elements: a vector phase of 1
      const int64_t row = (T + 1 + 15) / 16 * 16;
      st = 1; sc = row; sb = row * D; n = B * D * row + 16; off = 1;
      break;
    }
    case Mem::kStrided: sc = 2; st = 4 * D; sb = 4 * D * T; n = B * 4 * D * T; break;
  }
  if (reverse) {
    off += (T - 1) * st;
    st = -st;
  }
  x.offset = off;
  x.s3 = {sb, st, sc};
  x.bytes = size_t(std::max<int64_t>(n, 1)) * t.size + 16;
  x.host.assign(x.bytes, 0);
  CK(cudaMalloc(&x.dev, x.bytes));
  CK(cudaMemset(x.dev, 0, x.bytes));
}
static void make2(Buf& x, const DType& t, int64_t B, int64_t D) {
  x.t = &t;
  x.offset = 0;
  x.s2 = {D, 1};
  x.bytes = size_t(std::max<int64_t>(B * D, 1)) * t.size + 16;
  x.host.assign(x.bytes, 0);
  CK(cudaMalloc(&x.dev, x.bytes));
  CK(cudaMemset(x.dev, 0, x.bytes));
}

// ---- one correctness case ---------------------------------------------------------------
struct Case {
  const DType* t;
  int64_t B, T, D;
  Mem mem;
  bool reverse, with_h0, with_grad_h, workspace;
  double a_low = 0.5, a_high = 1.0;
};

struct Err {
  double max_abs = 0, scale = 0;
  void add(cd got, cd want) {
    max_abs = std::max(max_abs, std::abs(got - want));
    scale = std::max(scale, std::abs(want));
  }
  double rel() const { return max_abs / std::max(1.0, scale); }
};

// Tolerance: rounding of the output to storage plus accumulated rounding of a contracting
// recurrence (the error of h_t is about sum_k prod|a| eps ~ eps / (1 - mean |a|) for |a|
// drawn uniformly from [a_low, a_high)).
static double tolerance(const Case& c) {
  const double memory = 1.0 / std::max(1e-6, 1.0 - 0.5 * (c.a_low + c.a_high));
  return 4 * c.t->eps_store + 64 * c.t->eps_acc * std::min(memory, double(c.T + 1));
}

static std::mt19937_64 g_rng(12345);

// A caller workspace of exactly `bytes` (what the entry point's *_workspace_size asked for),
// or none (the entry point then allocates per call).
struct Workspace {
  void* p = nullptr;
  size_t bytes = 0;
};
static Workspace workspace_for(size_t bytes, bool use, std::vector<void*>& owned) {
  if (!use || bytes == 0) return {};
  void* p = nullptr;
  CK(cudaMalloc(&p, bytes));
  owned.push_back(p);
  return {p, bytes};
}

static void check_launch(const char* what, int rc) {
  if (rc == 0) return;
  std::fprintf(stderr, "%s returned %s\n", what, cudaGetErrorName(cudaError_t(rc)));
  std::exit(2);
}

static bool run_case(const Case& c, bool quiet = false) {
  const DType& t = *c.t;
  const int64_t B = c.B, T = c.T, D = c.D;
  std::uniform_real_distribution<double> ua(c.a_low, c.a_high), un(-1, 1), uph(-0.3, 0.3);
  Buf a, b, h, g, ga, gb, h0, hl, gl, gh0, A, Bs;
  make3(a, t, B, T, D, c.mem, c.reverse);
  make3(b, t, B, T, D, c.mem, c.reverse);
  make3(h, t, B, T, D, c.mem, c.reverse);
  make3(g, t, B, T, D, c.mem, c.reverse);
  make3(ga, t, B, T, D, c.mem, c.reverse);
  make3(gb, t, B, T, D, c.mem, c.reverse);
  make2(h0, t, B, D);
  make2(hl, t, B, D);
  make2(gl, t, B, D);
  make2(gh0, t, B, D);
  make2(A, t, B, D);
  make2(Bs, t, B, D);
  auto rnd = [&]() { return t.complex ? cd(un(g_rng), un(g_rng)) : cd(un(g_rng)); };
  for (int64_t bb = 0; bb < B; ++bb)
    for (int64_t u = 0; u < T; ++u)
      for (int64_t cc = 0; cc < D; ++cc) {
        const double mag = ua(g_rng);
        a.set(bb, u, cc, t.complex ? std::polar(mag, uph(g_rng)) : cd(mag));
        b.set(bb, u, cc, rnd());
        g.set(bb, u, cc, rnd());
      }
  for (int64_t i = 0; i < B * D; ++i) {
    store(t, h0.host.data() + i * t.size, rnd());
    store(t, gl.host.data() + i * t.size, rnd());
  }
  a.upload(); b.upload(); g.upload(); h0.upload(); gl.upload();

  std::vector<void*> owned;
  cudaStream_t stream = nullptr;
  // Forward.
  ScanForwardParams fp;
  fp.dtype = t.kind;
  fp.shape = {B, T, D};
  fp.a = {a.cptr(), a.s3};
  fp.b = {b.cptr(), b.s3};
  if (c.with_h0) fp.h0 = {h0.cptr(), h0.s2};
  fp.h = {h.ptr(), h.s3};
  fp.h_last = {hl.ptr(), hl.s2};
  fp.deterministic = g_det;
  Workspace w = workspace_for(kc::scan_forward_workspace_size(fp), c.workspace, owned);
  check_launch("scan_forward", kc::scan_forward(fp, stream, w.p, w.bytes));
  // Summary.
  ScanSummaryParams sp;
  sp.dtype = t.kind;
  sp.shape = {B, T, D};
  sp.a = fp.a;
  sp.b = fp.b;
  sp.A = {A.ptr(), A.s2};
  sp.B = {Bs.ptr(), Bs.s2};
  sp.deterministic = g_det;
  w = workspace_for(kc::scan_summary_workspace_size(sp), c.workspace, owned);
  check_launch("scan_summary", kc::scan_summary(sp, stream, w.p, w.bytes));
  CK(cudaDeviceSynchronize());
  h.download(); hl.download(); A.download(); Bs.download();
  // Backward uses the kernel's own h (so the reference sees the same h values).
  ScanBackwardParams bp;
  bp.dtype = t.kind;
  bp.shape = {B, T, D};
  bp.a = fp.a;
  bp.h = {h.cptr(), h.s3};
  if (c.with_h0) bp.h0 = {h0.cptr(), h0.s2};
  if (c.with_grad_h) bp.grad_h = {g.cptr(), g.s3};
  bp.grad_h_last = {gl.cptr(), gl.s2};
  bp.grad_a = {ga.ptr(), ga.s3};
  bp.grad_b = {gb.ptr(), gb.s3};
  bp.grad_h0 = {gh0.ptr(), gh0.s2};
  bp.deterministic = g_det;
  w = workspace_for(kc::scan_backward_workspace_size(bp), c.workspace, owned);
  check_launch("scan_backward", kc::scan_backward(bp, stream, w.p, w.bytes));
  CK(cudaDeviceSynchronize());
  ga.download(); gb.download(); gh0.download();
  for (void* p : owned) CK(cudaFree(p));

  // fp64 reference on the same stored inputs.
  Err eh, ehl, eA, eB, ega, egb, egh0;
  std::vector<cd> lam(size_t(std::max<int64_t>(T, 1)));
  for (int64_t bb = 0; bb < B; ++bb)
    for (int64_t cc = 0; cc < D; ++cc) {
      const cd init = c.with_h0 ? load(t, h0.host.data() + h0.at2(bb, cc)) : cd(0);
      cd s = init, P = 1, Q = 0;
      for (int64_t u = 0; u < T; ++u) {
        const cd av = a.get(bb, u, cc), bv = b.get(bb, u, cc);
        s = av * s + bv;
        P = av * P;
        Q = av * Q + bv;
        eh.add(h.get(bb, u, cc), s);
      }
      ehl.add(load(t, hl.host.data() + hl.at2(bb, cc)), s);
      eA.add(load(t, A.host.data() + A.at2(bb, cc)), P);
      eB.add(load(t, Bs.host.data() + Bs.at2(bb, cc)), Q);
      cd l = load(t, gl.host.data() + gl.at2(bb, cc));
      for (int64_t u = T - 1; u >= 0; --u) {
        if (u + 1 < T) l = std::conj(a.get(bb, u + 1, cc)) * l;
        if (c.with_grad_h) l += g.get(bb, u, cc);
        lam[size_t(u)] = l;
      }
      for (int64_t u = 0; u < T; ++u) {
        const cd hp = u > 0 ? h.get(bb, u - 1, cc) : init;
        egb.add(gb.get(bb, u, cc), lam[size_t(u)]);
        ega.add(ga.get(bb, u, cc), lam[size_t(u)] * std::conj(hp));
      }
      const cd want_gh0 = T > 0 ? std::conj(a.get(bb, 0, cc)) * lam[0] : l;
      egh0.add(load(t, gh0.host.data() + gh0.at2(bb, cc)), want_gh0);
    }
  const double tol = tolerance(c);
  const Err* errs[] = {&eh, &ehl, &eA, &eB, &ega, &egb, &egh0};
  const char* names[] = {"h", "h_last", "A", "B", "grad_a", "grad_b", "grad_h0"};
  bool ok = true;
  double worst = 0;
  const char* worst_name = "";
  for (int i = 0; i < 7; ++i) {
    const double r = errs[i]->rel();
    if (!(r <= tol)) ok = false;  // NaN fails too
    if (!(r <= worst)) { worst = r; worst_name = names[i]; }
  }
  if (!ok) ++g_failures;
  if (!quiet || !ok) {
    std::printf("%-4s %s%-9s B=%-4lld T=%-8lld D=%-5lld %-8s rev=%d h0=%d gh=%d ws=%d  worst %-7s %.2e (tol %.1e)\n",
                ok ? "ok" : "FAIL", g_det ? "det " : "", t.name, (long long)B, (long long)T, (long long)D, mem_name(c.mem),
                c.reverse, c.with_h0, c.with_grad_h, c.workspace, worst_name, worst, tol);
    if (!ok) {
      for (int i = 0; i < 7; ++i) std::printf("      %-8s rel err %.3e\n", names[i], errs[i]->rel());
    }
  }
  if (g_json) {
    std::fprintf(g_json,
                 "{\"mode\":\"check\",\"deterministic\":%d,\"dtype\":\"%s\",\"B\":%lld,\"T\":%lld,\"D\":%lld,\"mem\":\"%s\","
                 "\"reverse\":%d,\"h0\":%d,\"grad_h\":%d,\"workspace\":%d,\"worst\":\"%s\",\"rel_err\":%.3e,"
                 "\"tol\":%.3e,\"ok\":%s}\n",
                 int(g_det), t.name, (long long)B, (long long)T, (long long)D, mem_name(c.mem), c.reverse, c.with_h0,
                 c.with_grad_h, c.workspace, worst_name, worst, tol, ok ? "true" : "false");
  }
  return ok;
}

static const DType* kAll[] = {&kF32, &kF64, &kBF16, &kF16, &kC64};

// ---- packed sequences (ScanSegments) ------------------------------------------------------
// Random bounds (empty segments first, in the middle and last; nseg segments), batch 1.
static std::vector<int64_t> random_bounds(int64_t T, int nseg) {
  std::uniform_int_distribution<int64_t> cut(0, T);
  std::vector<int64_t> b = {0, 0, std::min<int64_t>(T, 1), T, T};
  while (int(b.size()) < nseg + 1) b.push_back(cut(g_rng));
  std::sort(b.begin(), b.end());
  return b;
}

// Forward and backward with segments against a per-segment fp64 reference.
static bool run_segments_case(const DType& t, int64_t T, int64_t D, Mem mem, bool reverse, int nseg) {
  const std::vector<int64_t> bounds = random_bounds(T, nseg);
  const int64_t N = int64_t(bounds.size()) - 1;
  std::uniform_real_distribution<double> ua(0.5, 1.0), un(-1, 1), uph(-0.3, 0.3);
  Buf a, b, h, g, ga, gb, h0, hl, gl, gh0;
  for (Buf* x : {&a, &b, &h, &g, &ga, &gb}) make3(*x, t, 1, T, D, mem, reverse);
  for (Buf* x : {&h0, &hl, &gl, &gh0}) make2(*x, t, N, D);
  auto rnd = [&]() { return t.complex ? cd(un(g_rng), un(g_rng)) : cd(un(g_rng)); };
  for (int64_t u = 0; u < T; ++u)
    for (int64_t cc = 0; cc < D; ++cc) {
      const double mag = ua(g_rng);
      a.set(0, u, cc, t.complex ? std::polar(mag, uph(g_rng)) : cd(mag));
      b.set(0, u, cc, rnd());
      g.set(0, u, cc, rnd());
    }
  for (int64_t i = 0; i < N * D; ++i) {
    store(t, h0.host.data() + i * t.size, rnd());
    store(t, gl.host.data() + i * t.size, rnd());
  }
  a.upload(); b.upload(); g.upload(); h0.upload(); gl.upload();
  int64_t* dbounds = nullptr;
  CK(cudaMalloc(&dbounds, bounds.size() * sizeof(int64_t)));
  CK(cudaMemcpy(dbounds, bounds.data(), bounds.size() * sizeof(int64_t), cudaMemcpyHostToDevice));
  ScanForwardParams fp;
  fp.dtype = t.kind;
  fp.shape = {1, T, D};
  fp.a = {a.cptr(), a.s3};
  fp.b = {b.cptr(), b.s3};
  fp.h0 = {h0.cptr(), h0.s2};
  fp.h = {h.ptr(), h.s3};
  fp.h_last = {hl.ptr(), hl.s2};
  fp.segments = {dbounds, N};
  fp.deterministic = g_det;
  check_launch("scan_forward (segments)", kc::scan_forward(fp, nullptr));
  CK(cudaDeviceSynchronize());
  h.download(); hl.download();
  ScanBackwardParams bp;
  bp.dtype = t.kind;
  bp.shape = fp.shape;
  bp.a = fp.a;
  bp.h = {h.cptr(), h.s3};
  bp.h0 = fp.h0;
  bp.grad_h = {g.cptr(), g.s3};
  bp.grad_h_last = {gl.cptr(), gl.s2};
  bp.grad_a = {ga.ptr(), ga.s3};
  bp.grad_b = {gb.ptr(), gb.s3};
  bp.grad_h0 = {gh0.ptr(), gh0.s2};
  bp.segments = fp.segments;
  bp.deterministic = g_det;
  check_launch("scan_backward (segments)", kc::scan_backward(bp, nullptr));
  CK(cudaDeviceSynchronize());
  ga.download(); gb.download(); gh0.download();
  CK(cudaFree(dbounds));
  Err eh, ehl, ega, egb, egh0;
  for (int64_t cc = 0; cc < D; ++cc)
    for (int64_t i = 0; i < N; ++i) {
      const cd init = load(t, h0.host.data() + h0.at2(i, cc));
      cd st = init;
      for (int64_t u = bounds[i]; u < bounds[i + 1]; ++u) {
        st = a.get(0, u, cc) * st + b.get(0, u, cc);
        eh.add(h.get(0, u, cc), st);
      }
      ehl.add(load(t, hl.host.data() + hl.at2(i, cc)), st);
      cd carry = load(t, gl.host.data() + gl.at2(i, cc));
      for (int64_t u = bounds[i + 1] - 1; u >= bounds[i]; --u) {
        const cd lam = g.get(0, u, cc) + carry;
        const cd hp = u > bounds[i] ? h.get(0, u - 1, cc) : init;
        egb.add(gb.get(0, u, cc), lam);
        ega.add(ga.get(0, u, cc), lam * std::conj(hp));
        carry = std::conj(a.get(0, u, cc)) * lam;
      }
      egh0.add(load(t, gh0.host.data() + gh0.at2(i, cc)), carry);
    }
  const double tol = tolerance(Case{&t, 1, T, D, mem, reverse, true, true, false});
  const Err* errs[] = {&eh, &ehl, &ega, &egb, &egh0};
  const char* names[] = {"h", "h_last", "grad_a", "grad_b", "grad_h0"};
  bool ok = true;
  for (int i = 0; i < 5; ++i) ok = ok && errs[i]->rel() <= tol;
  if (!ok) ++g_failures;
  std::printf("%-4s %ssegments %-9s T=%-8lld D=%-5lld %-8s rev=%d N=%lld", ok ? "ok" : "FAIL", g_det ? "det " : "",
              t.name, (long long)T, (long long)D, mem_name(mem), reverse, (long long)N);
  for (int i = 0; i < 5; ++i) std::printf(" %s %.1e", names[i], errs[i]->rel());
  std::printf(" (tol %.1e)\n", tol);
  return ok;
}

static int segments_check() {
  int n = 0;
  for (const DType* t : kAll) {
    run_segments_case(*t, 70001, 1, Mem::kTime, false, 40);       // 128-bit loads, tile chains
    run_segments_case(*t, 70007, 2, Mem::kTimeOffset, true, 300);  // vector phase, reverse
    run_segments_case(*t, 5000, 64, Mem::kChannels, false, 200);   // 32 or 8 channels per CTA
    run_segments_case(*t, 3001, 10, Mem::kChannels, true, 1000);   // many tiny segments
    run_segments_case(*t, 4099, 3, Mem::kStrided, false, 50);
    run_segments_case(*t, 0, 3, Mem::kChannels, false, 3);         // every segment empty
    n += 6;
  }
  g_det = true;
  run_segments_case(kF32, 70001, 3, Mem::kTime, false, 100);
  run_segments_case(kF32, 5000, 64, Mem::kChannels, true, 100);
  g_det = false;
  return n + 2;
}

static int mode_check() {
  int n = 0;
  for (const DType* t : kAll) {
    const int64_t deep = t->size >= 8 ? 40000 : 70001;  // ~10-20 time tiles
    std::vector<Case> cases = {
        // 4 groups of 32 channels: 8 channels per CTA on a GPU of more than 8 SMs (fit_to_device)
        {t, 2, 1000, 64, Mem::kChannels, false, true, true, true},
        {t, 40, 300, 64, Mem::kChannels, true, true, true, true},       // 32 channels/CTA up to 160 SMs
        {t, 3, 777, 10, Mem::kChannels, true, false, true, false},      // 8 channels/CTA, reverse
        {t, 1, 300, 33, Mem::kChannels, false, true, false, true},      // partial column block
        {t, 2, deep, 3, Mem::kTime, false, true, true, true},           // 128-bit loads
        {t, 2, deep, 3, Mem::kTime, true, true, true, false},           // reverse, vector
        {t, 1, deep + 6, 2, Mem::kTimeOffset, false, false, true, true},  // vector phase 1
        {t, 1, deep + 6, 2, Mem::kTimeOffset, true, true, true, false},
        {t, 2, 333, 5, Mem::kStrided, false, true, true, true},         // general strides
        {t, 2, 4099, 3, Mem::kStrided, true, true, false, false},
        {t, 2, 1, 7, Mem::kChannels, false, true, true, true},          // T = 1
        {t, 2, 0, 7, Mem::kChannels, false, true, true, true},          // T = 0
        {t, 1, 17, 1, Mem::kTime, true, true, true, true},              // B*D = 1, odd T
        {t, 1, 262147, 1, Mem::kTime, false, true, true, false},        // deep chain, one sequence
    };
    for (const Case& c : cases) {
      run_case(c);
      ++n;
    }
    Case near_one{t, 1, 200003, 1, Mem::kTime, false, true, true, true};
    near_one.a_low = 0.999;
    near_one.a_high = 0.9999;
    run_case(near_one);
    Case near_zero{t, 2, 5000, 40, Mem::kChannels, false, true, true, true};
    near_zero.a_low = 0.0;
    near_zero.a_high = 0.05;
    run_case(near_zero);
    n += 2;
  }
  // Deterministic mode on the layouts that have tile chains.
  g_det = true;
  for (const DType* t : {&kF32, &kBF16, &kC64}) {
    run_case({t, 2, 5000, 64, Mem::kChannels, true, true, true, true});
    run_case({t, 3, 3001, 10, Mem::kChannels, false, true, true, false});
    run_case({t, 2, 70001, 3, Mem::kTime, false, true, true, true});
    run_case({t, 1, 70007, 2, Mem::kTimeOffset, true, true, true, false});
    run_case({t, 2, 4099, 3, Mem::kStrided, true, true, true, true});
    n += 5;
  }
  g_det = false;
  n += segments_check();
  std::printf("check: %d cases, %d failed\n", n, g_failures);
  return g_failures ? 1 : 0;
}

// Small multi-tile cases for compute-sanitizer (memcheck, racecheck, synccheck).
static int mode_sanitize() {
  for (const DType* t : {&kF32, &kBF16, &kC64}) {
    run_case({t, 1, 300, 40, Mem::kChannels, false, true, true, false});
    run_case({t, 1, 200, 12, Mem::kChannels, true, true, true, true});
    run_case({t, 1, 9000, 1, Mem::kTime, false, true, true, false});
    run_case({t, 1, 9000, 1, Mem::kTimeOffset, true, true, true, true});
    run_case({t, 1, 300, 3, Mem::kStrided, false, true, true, false});
  }
  std::printf("sanitize: %d failed\n", g_failures);
  return g_failures ? 1 : 0;
}

// ---- device-side fill (benchmark and stress sizes are too large for the host) -------------
__global__ void fill_kernel(void* p, int64_t n, int kind, float lo, float hi, uint64_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint64_t x = (uint64_t(i) + seed) * 0x9E3779B97F4A7C15ull;
    x ^= x >> 31; x *= 0xBF58476D1CE4E5B9ull; x ^= x >> 29;
    const float r = lo + (hi - lo) * float(x >> 40) * (1.0f / 16777216.0f);
    switch (kind) {
      case 0: static_cast<float*>(p)[i] = r; break;
      case 1: static_cast<double*>(p)[i] = r; break;
      case 2: static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16(r); break;
      case 3: static_cast<__half*>(p)[i] = __float2half(r); break;
      case 4: static_cast<float2*>(p)[i] = make_float2(r, 0.f); break;
    }
  }
}
static void fill(const DType& t, void* p, int64_t n, float lo, float hi, uint64_t seed, cudaStream_t s = nullptr) {
  fill_kernel<<<1024, 256, 0, s>>>(p, n, int(t.kind), lo, hi, seed);
  CK(cudaGetLastError());
}

// Dense (B, T, D) problem on the device for stress and bench: channels layout (B, T, D) with D
// fastest, or time layout with T fastest.
struct Dense {
  const DType* t;
  int64_t B, T, D;
  bool time_major;
  char *a = nullptr, *b = nullptr, *h = nullptr, *g = nullptr, *ga = nullptr, *gb = nullptr;
  char *hl = nullptr, *gh0 = nullptr, *ws = nullptr;
  size_t ws_bytes = 0;
  Strides3 s3() const { return time_major ? Strides3{T * D, 1, T} : Strides3{T * D, D, 1}; }
  size_t bytes() const { return size_t(B * T * D) * t->size; }
  void alloc(bool backward) {
    CK(cudaMalloc(&a, bytes())); CK(cudaMalloc(&b, bytes())); CK(cudaMalloc(&h, bytes()));
    if (backward) { CK(cudaMalloc(&g, bytes())); CK(cudaMalloc(&ga, bytes())); CK(cudaMalloc(&gb, bytes())); }
    CK(cudaMalloc(&hl, size_t(B * D) * t->size)); CK(cudaMalloc(&gh0, size_t(B * D) * t->size));
    fill(*t, a, B * T * D, 0.5f, 1.0f, 1);
    fill(*t, b, B * T * D, -1.f, 1.f, 2);
    if (backward) fill(*t, g, B * T * D, -1.f, 1.f, 3);
    ws_bytes = std::max({kc::scan_forward_workspace_size(fwd()), kc::scan_backward_workspace_size(bwd()), size_t(16)});
    CK(cudaMalloc(&ws, ws_bytes));
  }
  void release() {
    for (char* p : {a, b, h, g, ga, gb, hl, gh0, ws}) if (p) CK(cudaFree(p));
    a = b = h = g = ga = gb = hl = gh0 = ws = nullptr;
  }
  ScanForwardParams fwd(char* out = nullptr, char* out_last = nullptr) const {
    ScanForwardParams p;
    p.dtype = t->kind;
    p.shape = {B, T, D};
    p.a = {a, s3()};
    p.b = {b, s3()};
    p.h = {out ? out : h, s3()};
    p.h_last = {out_last ? out_last : hl, {D, 1}};
    return p;
  }
  ScanBackwardParams bwd() const {
    ScanBackwardParams p;
    p.dtype = t->kind;
    p.shape = {B, T, D};
    p.a = {a, s3()};
    p.h = {h, s3()};
    p.grad_h = {g, s3()};
    p.grad_a = {ga, s3()};
    p.grad_b = {gb, s3()};
    p.grad_h0 = {gh0, {D, 1}};
    return p;
  }
};

// Look-back stress: deep chains of tiles on two streams at once, repeated; every output is
// compared bitwise with the first call's (run-to-run differences are reported, not failed:
// the default mode does not promise them) and the first call's with a host fp64 reference
// of a few sequences.
static int mode_stress() {
  struct S { const DType* t; int64_t B, T, D; bool time_major; int calls; };
  const S shapes[] = {
      {&kF32, 1, int64_t(1) << 22, 1, true, 100},   // 1024 tiles in one chain
      {&kBF16, 1, int64_t(1) << 22, 1, true, 100},
      {&kF32, 1, int64_t(1) << 20, 64, false, 60},  // 8 groups x 2048 tiles of 8 channels
      {&kF32, 4, int64_t(1) << 18, 8, false, 60},   // 8 channels per CTA
      {&kC64, 3, int64_t(1) << 19, 1, true, 40},
  };
  for (const S& s : shapes) {
    Dense d{s.t, s.B, s.T, s.D, s.time_major};
    d.alloc(false);
    cudaStream_t st[2];
    CK(cudaStreamCreateWithFlags(&st[0], cudaStreamNonBlocking));
    CK(cudaStreamCreateWithFlags(&st[1], cudaStreamNonBlocking));
    char* out[2];
    CK(cudaMalloc(&out[0], d.bytes()));
    CK(cudaMalloc(&out[1], d.bytes()));
    std::vector<char> first(d.bytes()), got(d.bytes());
    // First result on the legacy stream, checked against the host reference (a few sequences).
    CK(cudaMemset(d.h, 0, d.bytes()));
    check_launch("scan_forward", kc::scan_forward(d.fwd(), nullptr));
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(first.data(), d.h, d.bytes(), cudaMemcpyDeviceToHost));
    std::vector<char> ha(d.bytes()), hb(d.bytes());
    CK(cudaMemcpy(ha.data(), d.a, d.bytes(), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hb.data(), d.b, d.bytes(), cudaMemcpyDeviceToHost));
    const Strides3 s3 = d.s3();
    double max_rel = 0;
    for (int64_t seq = 0; seq < std::min<int64_t>(s.B * s.D, 4); ++seq) {
      const int64_t bb = seq / s.D, cc = seq % s.D;
      cd state = 0;
      double scale = 1;
      for (int64_t u = 0; u < s.T; ++u) {
        const size_t i = size_t(bb * s3.batch + u * s3.time + cc * s3.channel) * s.t->size;
        state = load(*s.t, ha.data() + i) * state + load(*s.t, hb.data() + i);
        scale = std::max(scale, std::abs(state));
        max_rel = std::max(max_rel, std::abs(load(*s.t, first.data() + i) - state) / scale);
      }
    }
    Case c{s.t, s.B, s.T, s.D, Mem::kTime, false, false, false, false};
    const bool ref_ok = max_rel <= tolerance(c);
    if (!ref_ok) ++g_failures;
    // Repeats: two streams, per-call scratch (cudaMallocAsync), none shared; then the same in
    // deterministic mode, compared with its own first result.
    int differing = 0, det_differing = 0;
    std::vector<char> det_first;
    for (int det = 0; det < 2; ++det) {
      for (int i = 0; i < s.calls; ++i) {
        const int k = i & 1;
        ScanForwardParams p = d.fwd(out[k], nullptr);
        p.deterministic = det == 1;
        check_launch("scan_forward", kc::scan_forward(p, st[k]));
        if (k == 1 || i + 1 == s.calls) {
          CK(cudaDeviceSynchronize());
          for (int kk = 0; kk <= k; ++kk) {
            CK(cudaMemcpy(got.data(), out[kk], d.bytes(), cudaMemcpyDeviceToHost));
            if (det && det_first.empty()) det_first = got;
            const std::vector<char>& base = det ? det_first : first;
            if (std::memcmp(got.data(), base.data(), d.bytes()) != 0) ++(det ? det_differing : differing);
          }
        }
      }
    }
    if (det_differing) ++g_failures;
    std::printf("%-4s stress %-9s B=%lld T=%lld D=%lld %s: %d calls on 2 streams, ref rel err %.2e, "
                "%d of %d results differ bitwise from the first (deterministic mode: %d)\n",
                ref_ok ? "ok" : "FAIL", s.t->name, (long long)s.B, (long long)s.T, (long long)s.D,
                s.time_major ? "time" : "channels", s.calls, max_rel, differing, s.calls, det_differing);
    if (g_json)
      std::fprintf(g_json,
                   "{\"mode\":\"stress\",\"dtype\":\"%s\",\"B\":%lld,\"T\":%lld,\"D\":%lld,\"layout\":\"%s\","
                   "\"calls\":%d,\"ref_rel_err\":%.3e,\"bitwise_differing\":%d,\"det_bitwise_differing\":%d,\"ok\":%s}\n",
                   s.t->name, (long long)s.B, (long long)s.T, (long long)s.D, s.time_major ? "time" : "channels",
                   s.calls, max_rel, differing, det_differing, ref_ok && !det_differing ? "true" : "false");
    CK(cudaFree(out[0]));
    CK(cudaFree(out[1]));
    CK(cudaStreamDestroy(st[0]));
    CK(cudaStreamDestroy(st[1]));
    d.release();
  }
  std::printf("stress: %d failed\n", g_failures);
  return g_failures ? 1 : 0;
}

// Time of one call of `fn` in ms: `reps` calls captured in a CUDA graph (no launch gaps, no
// host overhead), the graph replayed 5 times, median replay / reps.
template <class Fn>
static double graph_time_ms(cudaStream_t s, int reps, Fn fn) {
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < reps; ++i) fn();
  CK(cudaStreamEndCapture(s, &graph));
  CK(cudaGraphInstantiate(&exec, graph, 0));
  CK(cudaGraphLaunch(exec, s));  // warm-up
  CK(cudaStreamSynchronize(s));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  std::vector<float> t;
  for (int r = 0; r < 5; ++r) {
    CK(cudaEventRecord(e0, s));
    CK(cudaGraphLaunch(exec, s));
    CK(cudaEventRecord(e1, s));
    CK(cudaEventSynchronize(e1));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    t.push_back(ms);
  }
  std::sort(t.begin(), t.end());
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  CK(cudaGraphExecDestroy(exec));
  CK(cudaGraphDestroy(graph));
  return t[t.size() / 2] / reps;
}

static int mode_bench() {
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("bench on %s (%d SMs, L2 %d MB); GB/s counts 3 (forward) and 5 (backward) streams;\n"
              "%% is of a device-to-device copy of one operand's bytes timed the same way\n",
              prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
  std::printf("%-9s %-8s %-9s %-5s %10s %10s %7s %10s %7s %8s\n", "dtype", "layout", "T", "B*D", "copy GB/s",
              "fwd GB/s", "fwd %", "bwd GB/s", "bwd %", "det fwd%");
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  // SEQPAR_BENCH_DTYPE=float32 (or bfloat16, complex64) runs one dtype, for variants.
  const char* only = std::getenv("SEQPAR_BENCH_DTYPE");
  // SEQPAR_BENCH_T / SEQPAR_BENCH_BD / SEQPAR_BENCH_LAYOUT (time or channels) keep one shape,
  // e.g. for a profiler (ncu) that should see only that shape's kernels.
  auto env_int = [](const char* name) {
    const char* v = std::getenv(name);
    return v != nullptr ? std::atoll(v) : 0LL;
  };
  const long long only_t = env_int("SEQPAR_BENCH_T"), only_bd = env_int("SEQPAR_BENCH_BD");
  const char* only_layout = std::getenv("SEQPAR_BENCH_LAYOUT");
  // complex64 (complex128 accumulation) since 2026-11-26: it had no bandwidth figure.
  for (const DType* t : {&kF32, &kBF16, &kC64}) {
    if (only != nullptr && std::string(only) != t->name) continue;
    for (int64_t T : {int64_t(1) << 17, int64_t(1) << 20, int64_t(1) << 23}) {
      for (int64_t bd : {1, 16, 256, 4096}) {
        if (T * bd > (int64_t(1) << 29)) continue;  // <= 2 GiB per fp32 operand
        for (bool time_major : {true, false}) {
          if (bd == 1 && !time_major) continue;
          if ((only_t != 0 && only_t != T) || (only_bd != 0 && only_bd != bd)) continue;
          if (only_layout != nullptr && std::string(only_layout) != (time_major ? "time" : "channels")) continue;
          Dense d = time_major ? Dense{t, bd, T, 1, true} : Dense{t, 1, T, bd, false};
          d.alloc(true);
          // Forward h feeds backward.
          check_launch("scan_forward", kc::scan_forward(d.fwd(), s));
          const double bytes = double(d.bytes());
          const int reps = int(std::clamp(4e9 / (5 * bytes), 3.0, 200.0));
          char* dst = d.ga;
          const double copy_ms = graph_time_ms(s, reps, [&] {
            CK(cudaMemcpyAsync(dst, d.a, d.bytes(), cudaMemcpyDeviceToDevice, s));
          });
          const ScanForwardParams fp = d.fwd();
          const ScanBackwardParams bp = d.bwd();
          int rc = 0;
          const double fwd_ms = graph_time_ms(s, reps, [&] { rc |= kc::scan_forward(fp, s, d.ws, d.ws_bytes); });
          const double bwd_ms = graph_time_ms(s, reps, [&] { rc |= kc::scan_backward(bp, s, d.ws, d.ws_bytes); });
          ScanForwardParams dp = fp;
          dp.deterministic = true;
          const double det_ms = graph_time_ms(s, reps, [&] { rc |= kc::scan_forward(dp, s, d.ws, d.ws_bytes); });
          if (rc != 0) { std::fprintf(stderr, "bench launch failed: %s\n", cudaGetErrorName(cudaError_t(rc))); return 2; }
          const double copy_gbs = 2 * bytes / copy_ms / 1e6;
          const double fwd_gbs = 3 * bytes / fwd_ms / 1e6;
          const double bwd_gbs = 5 * bytes / bwd_ms / 1e6;
          const double det_gbs = 3 * bytes / det_ms / 1e6;
          std::printf("%-9s %-8s %-9lld %-5lld %10.0f %10.0f %6.1f%% %10.0f %6.1f%% %7.1f%%\n", t->name,
                      time_major ? "time" : "channels", (long long)T, (long long)bd, copy_gbs, fwd_gbs,
                      100 * fwd_gbs / copy_gbs, bwd_gbs, 100 * bwd_gbs / copy_gbs, 100 * det_gbs / copy_gbs);
          std::fflush(stdout);
          if (g_json)
            std::fprintf(g_json,
                         "{\"mode\":\"bench\",\"variant\":\"%s\",\"device\":\"%s\",\"dtype\":\"%s\",\"layout\":\"%s\",\"T\":%lld,"
                         "\"BD\":%lld,\"copy_GBs\":%.1f,\"fwd_GBs\":%.1f,\"bwd_GBs\":%.1f,\"det_fwd_GBs\":%.1f,\"fwd_ms\":%.4f,"
                         "\"bwd_ms\":%.4f,\"reps\":%d}\n",
                         std::getenv("SEQPAR_VARIANT") ? std::getenv("SEQPAR_VARIANT") : "default",
                         prop.name, t->name, time_major ? "time" : "channels", (long long)T, (long long)bd,
                         copy_gbs, fwd_gbs, bwd_gbs, det_gbs, fwd_ms, bwd_ms, reps);
          d.release();
        }
      }
    }
  }
  // Packed sequences: the same tokens with segment starts inside the tiles, against the dense
  // scan (no segments), float32, in one run. Ratio = packed time / dense time.
  std::printf("segments (float32): packed / dense time, forward and backward\n");
  struct SegShape { bool time_major; int64_t B, T, D; int nseg; };
  for (const SegShape& sh : {SegShape{true, 1, int64_t(1) << 23, 1, 64}, SegShape{false, 1, int64_t(1) << 22, 64, 1000}}) {
    if (only != nullptr && std::string(only) != "float32") break;
    Dense d{&kF32, sh.B, sh.T, sh.D, sh.time_major};
    d.alloc(true);
    check_launch("scan_forward", kc::scan_forward(d.fwd(), s));
    std::vector<int64_t> bounds = random_bounds(sh.T, sh.nseg);
    const int64_t N = int64_t(bounds.size()) - 1;
    int64_t* dbounds = nullptr;
    char *h0 = nullptr, *hls = nullptr, *gls = nullptr, *gh0s = nullptr;
    CK(cudaMalloc(&dbounds, bounds.size() * sizeof(int64_t)));
    CK(cudaMemcpy(dbounds, bounds.data(), bounds.size() * sizeof(int64_t), cudaMemcpyHostToDevice));
    for (char** p : {&h0, &hls, &gls, &gh0s}) { CK(cudaMalloc(p, size_t(N * sh.D) * 4)); CK(cudaMemset(*p, 0, size_t(N * sh.D) * 4)); }
    ScanForwardParams fp = d.fwd(), fps = fp;
    ScanBackwardParams bp = d.bwd(), bps = bp;
    fps.segments = {dbounds, N}; fps.h0 = {h0, {sh.D, 1}}; fps.h_last = {hls, {sh.D, 1}};
    bps.segments = {dbounds, N}; bps.h0 = {h0, {sh.D, 1}}; bps.grad_h_last = {gls, {sh.D, 1}}; bps.grad_h0 = {gh0s, {sh.D, 1}};
    const int reps = int(std::clamp(4e9 / (5 * double(d.bytes())), 3.0, 200.0));
    int rc = 0;
    const double f = graph_time_ms(s, reps, [&] { rc |= kc::scan_forward(fp, s, d.ws, d.ws_bytes); });
    const double fs = graph_time_ms(s, reps, [&] { rc |= kc::scan_forward(fps, s, d.ws, d.ws_bytes); });
    const double b = graph_time_ms(s, reps, [&] { rc |= kc::scan_backward(bp, s, d.ws, d.ws_bytes); });
    const double bs = graph_time_ms(s, reps, [&] { rc |= kc::scan_backward(bps, s, d.ws, d.ws_bytes); });
    if (rc != 0) { std::fprintf(stderr, "segments bench launch failed\n"); return 2; }
    std::printf("  %-8s T=%-9lld D=%-4lld segments=%-5lld forward %.3f / %.3f ms = %.3f, backward %.3f / %.3f ms = %.3f\n",
                sh.time_major ? "time" : "channels", (long long)sh.T, (long long)sh.D, (long long)N, fs, f, fs / f, bs, b, bs / b);
    if (g_json)
      std::fprintf(g_json, "{\"mode\":\"bench_segments\",\"device\":\"%s\",\"layout\":\"%s\",\"T\":%lld,\"D\":%lld,"
                   "\"segments\":%lld,\"fwd_ms\":%.4f,\"fwd_packed_ms\":%.4f,\"bwd_ms\":%.4f,\"bwd_packed_ms\":%.4f}\n",
                   prop.name, sh.time_major ? "time" : "channels", (long long)sh.T, (long long)sh.D, (long long)N, f, fs, b, bs);
    for (char* p : {h0, hls, gls, gh0s}) CK(cudaFree(p));
    CK(cudaFree(dbounds));
    d.release();
  }
  CK(cudaStreamDestroy(s));
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s check|sanitize|stress|bench [--json FILE]\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[1];
  for (int i = 2; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--json") g_json = std::fopen(argv[i + 1], "a");
  }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::fprintf(stderr, "scan_gpu_check: no CUDA device found\n");
    return 3;
  }
  int rc = 2;
  if (mode == "check") rc = mode_check();
  else if (mode == "sanitize") rc = mode_sanitize();
  else if (mode == "stress") rc = mode_stress();
  else if (mode == "bench") rc = mode_bench();
  else std::fprintf(stderr, "scan_gpu_check: unknown mode '%s'\n", mode.c_str());
  if (g_json) std::fclose(g_json);
  return rc;
}
