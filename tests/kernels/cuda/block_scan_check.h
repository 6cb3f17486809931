// The checks of the CUDA 2x2 block scan (cuda_block_scan.h), shared by the host-emulation test
// (host_emulation/emu_block_scan_test.cpp, no GPU) and the GPU session's check program
// (gpu_check/block_scan_gpu_check.cu): the same cases against the same float64 reference, so
// that a result on the emulator and on a device mean the same thing.
//
// The reference is a plain sequential loop per (batch, channel) sequence written here
// (forward; the adjoint in its textbook lam_t = g_t + A_{t+1}^T lam_{t+1} form; the summary
// as an explicit matrix product), independent of the kernels' chunked maps. Inputs are
// rounded to the dtype first, and the backward gets the reference forward's h rounded to the
// dtype, so that the tolerance covers only the kernels' own arithmetic and output rounding.
// Every output buffer starts as NaN: each element the op should write is compared, and every
// other element (layout padding, A's unread corner) must still be NaN afterwards.
//
// The including program defines the memory functions declared below (host memory for the
// emulator, device memory for the GPU) and then calls run_all().
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "block_scan_chunks.h"
#include "seqpar/kernels/cuda_block_scan.h"

namespace block_check {

using namespace seqpar::kernels;
namespace kc = seqpar::kernels::cuda;
namespace kb = seqpar::kernels::cuda::block;
using Vec = std::vector<double>;

// ---- provided by the including program ------------------------------------------------------
void* device_alloc(size_t bytes);
void device_free(void* p);
void copy_to_device(void* dst, const void* src, size_t bytes);
void copy_to_host(void* dst, const void* src, size_t bytes);
void* test_stream();
int finish(void* stream);  // waits for the work queued on stream; 0 or an error code

inline int failures = 0;
inline int passes = 0;

// ---- element types on the host ---------------------------------------------------------------
struct DType {
  ScalarKind kind;
  const char* name;
  size_t size;
  double tol;    // max |out - ref| / max(max |ref|, floor / tol) over one output
  double floor;  // the smallest normal of the storage (of float32, their accumulation type, for
                 // bfloat16): outputs that decayed below it have lost their digits
};
// float32/float64 accumulate in float64: only the output rounding (2^-24) is visible for
// float32. bfloat16/float16 accumulate in float32 and round outputs to 8 / 11 bits.
inline const DType kF32{ScalarKind::kFloat32, "float32", 4, 5e-7, 0x1p-126};
inline const DType kF64{ScalarKind::kFloat64, "float64", 8, 1e-12, 0x1p-1022};
inline const DType kBF16{ScalarKind::kBFloat16, "bfloat16", 2, 1e-2, 0x1p-126};
inline const DType kF16{ScalarKind::kFloat16, "float16", 2, 2e-3, 0x1p-14};

inline double round_to(ScalarKind k, double x) {
  switch (k) {
    case ScalarKind::kFloat32: return static_cast<float>(x);
    case ScalarKind::kBFloat16: return __bfloat162float(__float2bfloat16(static_cast<float>(x)));
    case ScalarKind::kFloat16: return __half2float(__float2half(static_cast<float>(x)));
    default: return x;
  }
}
// The representable value nearest x that is not larger in magnitude (keeps a matrix built
// from rounded entries inside the spectral radius it was drawn with).
inline double round_inward(ScalarKind k, double x) {
  double y = x, r = round_to(k, y);
  while (std::fabs(r) > std::fabs(x)) {
    y -= std::copysign(std::fabs(y) * 0x1p-12, y);
    r = round_to(k, y);
  }
  return r;
}
inline void store_elem(ScalarKind k, void* buf, size_t i, double v) {
  switch (k) {
    case ScalarKind::kFloat32: static_cast<float*>(buf)[i] = static_cast<float>(v); break;
    case ScalarKind::kFloat64: static_cast<double*>(buf)[i] = v; break;
    case ScalarKind::kBFloat16: static_cast<__nv_bfloat16*>(buf)[i] = __float2bfloat16(static_cast<float>(v)); break;
    case ScalarKind::kFloat16: static_cast<__half*>(buf)[i] = __float2half(static_cast<float>(v)); break;
    default: break;
  }
}
inline double load_elem(ScalarKind k, const void* buf, size_t i) {
  switch (k) {
    case ScalarKind::kFloat32: return static_cast<const float*>(buf)[i];
    case ScalarKind::kFloat64: return static_cast<const double*>(buf)[i];
    case ScalarKind::kBFloat16: return __bfloat162float(static_cast<const __nv_bfloat16*>(buf)[i]);
    case ScalarKind::kFloat16: return __half2float(static_cast<const __half*>(buf)[i]);
    default: return 0;
  }
}
inline const double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---- layouts -----------------------------------------------------------------------------
// kPacked: (B, T, C, inner). kTimeMajor: (T, B, C, inner + 1), a padding element after each
// block. kChannelMajor: (B, C, T, inner), time contiguous. The (batch, channel) states are
// (B, C, inner) for kPacked and (C, B, inner) (padded like the 3-D operands) otherwise.
enum class Layout { kPacked, kTimeMajor, kChannelMajor };
inline const char* layout_name(Layout l) {
  return l == Layout::kPacked ? "packed" : l == Layout::kTimeMajor ? "time-major" : "channel-major";
}

// One (batch, time, channel, inner) operand: host copy in memory order. Kernel step t lives at
// memory slot t, or T - 1 - t when reversed (pointer at the last slot, negated time stride).
struct Tensor3 {
  int B = 0, T = 0, C = 0, n = 0;
  bool reverse = false;
  int64_t sb = 0, st = 0, sc = 0;
  size_t size = 0;
  Vec data;
  Tensor3() = default;
  Tensor3(int B_, int T_, int C_, int n_, Layout l, bool rev) : B(B_), T(T_), C(C_), n(n_), reverse(rev) {
    const int64_t pad = l == Layout::kTimeMajor ? n + 1 : n;
    if (l == Layout::kPacked) { sc = n; st = int64_t(C) * n; sb = int64_t(T) * C * n; }
    if (l == Layout::kTimeMajor) { sc = pad; sb = C * pad; st = int64_t(B) * C * pad; }
    if (l == Layout::kChannelMajor) { st = n; sc = int64_t(T) * n; sb = int64_t(C) * T * n; }
    size = size_t(B) * T * C * pad;
    data.assign(size, kNaN);
  }
  size_t at(int b, int t, int c) const {
    return size_t(b * sb + (reverse ? T - 1 - t : t) * st + c * sc);
  }
  double& operator()(int b, int t, int c, int i) { return data[at(b, t, c) + i]; }
  double operator()(int b, int t, int c, int i) const { return data[at(b, t, c) + i]; }
  Strides3 kernel_strides() const { return {sb, reverse ? -st : st, sc}; }
  size_t first_step() const { return reverse && T > 0 ? size_t(T - 1) * size_t(st) : 0; }
};
struct Tensor2 {
  int B = 0, C = 0, n = 0;
  int64_t sb = 0, sc = 0;
  size_t size = 0;
  Vec data;
  Tensor2() = default;
  Tensor2(int B_, int C_, int n_, Layout l) : B(B_), C(C_), n(n_) {
    if (l == Layout::kPacked) { sc = n; sb = int64_t(C) * n; size = size_t(B) * C * n; }
    else { sb = n + 1; sc = int64_t(B) * (n + 1); size = size_t(B) * C * (n + 1); }
    data.assign(size, kNaN);
  }
  size_t at(int b, int c) const { return size_t(b * sb + c * sc); }
  double& operator()(int b, int c, int i) { return data[at(b, c) + i]; }
  double operator()(int b, int c, int i) const { return data[at(b, c) + i]; }
  Strides2 kernel_strides() const { return {sb, sc}; }
};

// ---- device copies -------------------------------------------------------------------------
// A buffer in the dtype's storage on the device (host memory on the emulator), at least one
// element so that an empty operand still has an address.
class DeviceBuffer {
 public:
  DeviceBuffer(ScalarKind k, size_t elem_size, const Vec& host)
      : kind_(k), elem_(elem_size), count_(host.size()), bytes_(std::max<size_t>(1, host.size()) * elem_size) {
    ptr_ = device_alloc(bytes_);
    std::vector<unsigned char> staging(bytes_);
    for (size_t i = 0; i < count_; ++i) store_elem(kind_, staging.data(), i, host[i]);
    copy_to_device(ptr_, staging.data(), bytes_);
  }
  ~DeviceBuffer() { device_free(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* at(size_t element) const { return static_cast<unsigned char*>(ptr_) + element * elem_; }
  Vec download() const {
    std::vector<unsigned char> staging(bytes_);
    copy_to_host(staging.data(), ptr_, bytes_);
    Vec out(count_);
    for (size_t i = 0; i < count_; ++i) out[i] = load_elem(kind_, staging.data(), i);
    return out;
  }

 private:
  ScalarKind kind_;
  size_t elem_, count_, bytes_;
  void* ptr_ = nullptr;
};

// ---- cases ---------------------------------------------------------------------------------
enum class Regime { kMid, kNear0, kNear1 };
inline const char* regime_name(Regime r) {
  return r == Regime::kMid ? "mid" : r == Regime::kNear0 ? "near0" : "near1";
}

struct Case {
  int B, T, C;
  Layout layout = Layout::kPacked;
  bool reverse = false;
  bool h0 = true;           // h0 given (else zeros)
  bool h_last = true;       // h_last / grad_h0 written (else absent outputs)
  bool grad_h = true;       // grad_h given
  bool grad_h_last = true;  // grad_h_last given
  bool lower = false;       // lower_triangular (A[0][1] filled with NaN)
  Regime regime = Regime::kMid;
  int64_t chunk = 0;        // 0: the entry points' own chunk length
};

inline std::string describe(const DType& dt, const Case& c) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), "%s B=%d T=%d C=%d %s rev=%d h0=%d out_last=%d gh=%d ghl=%d lower=%d %s chunk=%lld",
                dt.name, c.B, c.T, c.C, layout_name(c.layout), c.reverse, c.h0, c.h_last, c.grad_h,
                c.grad_h_last, c.lower, regime_name(c.regime),
                static_cast<long long>(c.chunk ? c.chunk : kb::chunk_length(int64_t(c.B) * c.C, c.T)));
  return buf;
}

// A_t per regime: mid, a general matrix with infinity norm 0.95 (or, lower triangular, a
// diagonal in [0.3, 0.95] and a sub-diagonal in [-0.3, 0.3]); near0, entries of at most 0.05;
// near1, a rotation by a random angle scaled by 0.999 (an oscillator, radius 0.999 after
// rounding inward), or lower triangular: diagonal in [0.99, 0.999], sub-diagonal in [-0.02, 0.02].
inline void draw_A(std::mt19937_64& rng, const DType& dt, const Case& c, double a[4]) {
  std::uniform_real_distribution<double> u(-1, 1), u01(0, 1);
  auto r = [&](double x) { return round_inward(dt.kind, x); };
  if (c.regime == Regime::kNear0) {
    for (int i = 0; i < 4; ++i) a[i] = r(0.05 * u(rng));
  } else if (c.regime == Regime::kNear1) {
    if (c.lower) {
      a[0] = r(0.99 + 0.009 * u01(rng));
      a[3] = r(0.99 + 0.009 * u01(rng));
      a[2] = r(0.02 * u(rng));
    } else {
      const double th = 3.14159265358979 * u(rng), rad = 0.999;
      a[0] = r(rad * std::cos(th));
      a[1] = r(-rad * std::sin(th));
      a[2] = r(rad * std::sin(th));
      a[3] = a[0];
    }
  } else if (c.lower) {
    a[0] = r(0.3 + 0.65 * u01(rng));
    a[3] = r(0.3 + 0.65 * u01(rng));
    a[2] = r(0.3 * u(rng));
  } else {
    for (int i = 0; i < 4; ++i) a[i] = u(rng);
    const double norm = std::max(std::fabs(a[0]) + std::fabs(a[1]), std::fabs(a[2]) + std::fabs(a[3]));
    for (int i = 0; i < 4; ++i) a[i] = r(a[i] * 0.95 / norm);
  }
  if (c.lower) a[1] = kNaN;  // never to be read
}

struct Inputs {
  Tensor3 A, b, g;   // g: grad_h
  Tensor2 h0, gl;    // gl: grad_h_last
};
inline Inputs make_inputs(const DType& dt, const Case& c, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  Inputs in{Tensor3(c.B, c.T, c.C, 4, c.layout, c.reverse), Tensor3(c.B, c.T, c.C, 2, c.layout, c.reverse),
            Tensor3(c.B, c.T, c.C, 2, c.layout, c.reverse), Tensor2(c.B, c.C, 2, c.layout),
            Tensor2(c.B, c.C, 2, c.layout)};
  for (int b = 0; b < c.B; ++b)
    for (int t = 0; t < c.T; ++t)
      for (int ch = 0; ch < c.C; ++ch) {
        double a[4];
        draw_A(rng, dt, c, a);
        for (int i = 0; i < 4; ++i) in.A(b, t, ch, i) = a[i];
        for (int i = 0; i < 2; ++i) in.b(b, t, ch, i) = round_to(dt.kind, u(rng));
        for (int i = 0; i < 2; ++i) in.g(b, t, ch, i) = round_to(dt.kind, u(rng));
      }
  for (int b = 0; b < c.B; ++b)
    for (int ch = 0; ch < c.C; ++ch)
      for (int i = 0; i < 2; ++i) {
        in.h0(b, ch, i) = round_to(dt.kind, u(rng));
        in.gl(b, ch, i) = round_to(dt.kind, u(rng));
      }
  return in;
}

// ---- float64 reference ----------------------------------------------------------------------
struct M22 {
  double a00, a01, a10, a11;
};
inline M22 A_at(const Tensor3& A, int b, int t, int c, bool lower) {
  return {A(b, t, c, 0), lower ? 0.0 : A(b, t, c, 1), A(b, t, c, 2), A(b, t, c, 3)};
}

struct Reference {
  Tensor3 h, grad_A, grad_b;
  Tensor2 h_last, grad_h0, M, E;
};
inline Reference reference(const DType& dt, const Case& c, const Inputs& in, const Tensor3& h_in) {
  Reference r{Tensor3(c.B, c.T, c.C, 2, c.layout, c.reverse), Tensor3(c.B, c.T, c.C, 4, c.layout, c.reverse),
              Tensor3(c.B, c.T, c.C, 2, c.layout, c.reverse), Tensor2(c.B, c.C, 2, c.layout),
              Tensor2(c.B, c.C, 2, c.layout), Tensor2(c.B, c.C, 4, c.layout), Tensor2(c.B, c.C, 2, c.layout)};
  (void)dt;
  for (int b = 0; b < c.B; ++b)
    for (int ch = 0; ch < c.C; ++ch) {
      // Forward from h0; the summary's E is the same scan from zero.
      double x0 = c.h0 ? in.h0(b, ch, 0) : 0, x1 = c.h0 ? in.h0(b, ch, 1) : 0;
      double e0 = 0, e1 = 0;
      M22 P{1, 0, 0, 1};
      for (int t = 0; t < c.T; ++t) {
        const M22 a = A_at(in.A, b, t, ch, c.lower);
        const double y0 = a.a00 * x0 + a.a01 * x1 + in.b(b, t, ch, 0);
        const double y1 = a.a10 * x0 + a.a11 * x1 + in.b(b, t, ch, 1);
        x0 = y0, x1 = y1;
        r.h(b, t, ch, 0) = x0, r.h(b, t, ch, 1) = x1;
        const double f0 = a.a00 * e0 + a.a01 * e1 + in.b(b, t, ch, 0);
        const double f1 = a.a10 * e0 + a.a11 * e1 + in.b(b, t, ch, 1);
        e0 = f0, e1 = f1;
        P = {a.a00 * P.a00 + a.a01 * P.a10, a.a00 * P.a01 + a.a01 * P.a11, a.a10 * P.a00 + a.a11 * P.a10,
             a.a10 * P.a01 + a.a11 * P.a11};
      }
      r.h_last(b, ch, 0) = x0, r.h_last(b, ch, 1) = x1;
      r.M(b, ch, 0) = P.a00, r.M(b, ch, 1) = P.a01, r.M(b, ch, 2) = P.a10, r.M(b, ch, 3) = P.a11;
      r.E(b, ch, 0) = e0, r.E(b, ch, 1) = e1;
      // Adjoint: lam_{T-1} = g_{T-1} + g_last, lam_t = g_t + A_{t+1}^T lam_{t+1}.
      const double gl0 = c.grad_h_last ? in.gl(b, ch, 0) : 0, gl1 = c.grad_h_last ? in.gl(b, ch, 1) : 0;
      double l0 = 0, l1 = 0;
      for (int t = c.T - 1; t >= 0; --t) {
        double n0 = gl0, n1 = gl1;
        if (t + 1 < c.T) {
          const M22 a = A_at(in.A, b, t + 1, ch, c.lower);
          n0 = a.a00 * l0 + a.a10 * l1;
          n1 = a.a01 * l0 + a.a11 * l1;
        }
        l0 = n0 + (c.grad_h ? in.g(b, t, ch, 0) : 0);
        l1 = n1 + (c.grad_h ? in.g(b, t, ch, 1) : 0);
        r.grad_b(b, t, ch, 0) = l0, r.grad_b(b, t, ch, 1) = l1;
        const double p0 = t > 0 ? h_in(b, t - 1, ch, 0) : c.h0 ? in.h0(b, ch, 0) : 0;
        const double p1 = t > 0 ? h_in(b, t - 1, ch, 1) : c.h0 ? in.h0(b, ch, 1) : 0;
        r.grad_A(b, t, ch, 0) = l0 * p0;
        r.grad_A(b, t, ch, 1) = c.lower ? 0.0 : l0 * p1;
        r.grad_A(b, t, ch, 2) = l1 * p0;
        r.grad_A(b, t, ch, 3) = l1 * p1;
      }
      if (c.T == 0) {
        r.grad_h0(b, ch, 0) = gl0, r.grad_h0(b, ch, 1) = gl1;
      } else {
        const M22 a = A_at(in.A, b, 0, ch, c.lower);
        r.grad_h0(b, ch, 0) = a.a00 * l0 + a.a10 * l1;
        r.grad_h0(b, ch, 1) = a.a01 * l0 + a.a11 * l1;
      }
    }
  return r;
}

// ---- comparison -------------------------------------------------------------------------------
// ref holds NaN exactly where nothing is written (padding, A's unread corner in inputs only):
// those elements of out must still be NaN (the initial fill); the others must be within tol
// of ref relative to max(max |ref|, floor / tol).
struct Check {
  double err = 0;
  bool ok = true;
  std::string why;
};
inline Check compare(const Vec& out, const Vec& ref, const DType& dt) {
  Check r;
  double scale = 0, worst = 0;
  for (double x : ref) if (!std::isnan(x)) scale = std::max(scale, std::fabs(x));
  scale = std::max(scale, dt.floor / dt.tol);  // outputs that decayed below the floor are noise
  for (size_t i = 0; i < ref.size(); ++i) {
    if (std::isnan(ref[i])) {
      if (!std::isnan(out[i])) { r.ok = false; r.why = "wrote outside its elements at " + std::to_string(i); }
      continue;
    }
    const double d = std::fabs(out[i] - ref[i]);
    if (!(d <= worst)) {
      worst = std::isnan(d) ? INFINITY : d;
      if (!(d <= dt.tol * scale)) {
        r.ok = false;
        r.why = "element " + std::to_string(i) + ": " + std::to_string(out[i]) + " vs " + std::to_string(ref[i]);
      }
    }
  }
  r.err = worst / scale;
  return r;
}
inline void report(const char* op, const char* what, const std::string& desc, const Check& c) {
  if (c.ok) {
    ++passes;
    std::printf("ok %s %s %s rel_err=%.2e\n", op, what, desc.c_str(), c.err);
  } else {
    ++failures;
    std::printf("FAIL %s %s %s rel_err=%.2e: %s\n", op, what, desc.c_str(), c.err, c.why.c_str());
  }
}
inline void expect(bool cond, const std::string& what) {
  if (cond) {
    ++passes;
    std::printf("ok %s\n", what.c_str());
  } else {
    ++failures;
    std::printf("FAIL %s\n", what.c_str());
  }
}

// ---- one case: forward, backward and summary ---------------------------------------------
inline Tensor3 empty_like(const Tensor3& t) {
  Tensor3 e = t;
  e.data.assign(e.size, kNaN);
  return e;
}
inline Tensor2 empty_like(const Tensor2& t) {
  Tensor2 e = t;
  e.data.assign(e.size, kNaN);
  return e;
}

inline void run_case(const DType& dt, const Case& c, uint64_t seed) {
  const std::string desc = describe(dt, c);
  const Inputs in = make_inputs(dt, c, seed);
  // The backward's h: the reference forward rounded to the dtype (padding stays NaN). The
  // first call's h_in (any (B, T, C, 2) tensor) only feeds grad_A, which is not used.
  const Reference fwd_only = reference(dt, c, in, in.b);
  Tensor3 h_in = fwd_only.h;
  for (double& x : h_in.data) if (!std::isnan(x)) x = round_to(dt.kind, x);
  const Reference ref = reference(dt, c, in, h_in);
  const ScanShape shape{c.B, c.T, c.C};
  void* stream = test_stream();
  const int64_t chunk = c.chunk ? c.chunk : kb::chunk_length(int64_t(c.B) * c.C, c.T);

  DeviceBuffer dA(dt.kind, dt.size, in.A.data), db(dt.kind, dt.size, in.b.data), dg(dt.kind, dt.size, in.g.data);
  DeviceBuffer dh0(dt.kind, dt.size, in.h0.data), dgl(dt.kind, dt.size, in.gl.data);
  DeviceBuffer dhin(dt.kind, dt.size, h_in.data);
  auto c3 = [](const DeviceBuffer& d, const Tensor3& t) { return ConstOperand3{d.at(t.first_step()), t.kernel_strides()}; };
  auto o3 = [](const DeviceBuffer& d, const Tensor3& t) { return Operand3{d.at(t.first_step()), t.kernel_strides()}; };
  auto c2 = [](const DeviceBuffer& d, const Tensor2& t, bool present) {
    return ConstOperand2{present ? d.at(0) : nullptr, t.kernel_strides()};
  };
  auto o2 = [](const DeviceBuffer& d, const Tensor2& t, bool present) {
    return Operand2{present ? d.at(0) : nullptr, t.kernel_strides()};
  };
  // Runs the entry point, or the chunked one when the case fixes the chunk length.
  auto run = [&](auto chunked, auto entry, const auto& params) {
    const int err = c.chunk ? chunked(params, stream, chunk) : entry(params, stream);
    const int done = finish(stream);
    return err != 0 ? err : done;
  };

  {  // forward
    Tensor3 h = empty_like(ref.h);
    Tensor2 hl = empty_like(ref.h_last);
    DeviceBuffer dh(dt.kind, dt.size, h.data), dhl(dt.kind, dt.size, hl.data);
    BlockScanForwardParams p;
    p.dtype = dt.kind;
    p.shape = shape;
    p.A = c3(dA, in.A);
    p.b = c3(db, in.b);
    p.h0 = c2(dh0, in.h0, c.h0);
    p.h = o3(dh, h);
    p.h_last = o2(dhl, hl, c.h_last);
    p.lower_triangular = c.lower;
    const int err = run(kb::forward_chunked, kc::block_scan_forward, p);
    if (err != 0) {
      report("forward", "call", desc, Check{0, false, "error " + std::to_string(err)});
    } else {
      report("forward", "h", desc, compare(dh.download(), ref.h.data, dt));
      report("forward", "h_last", desc, compare(dhl.download(), c.h_last ? ref.h_last.data : hl.data, dt));
    }
  }
  {  // backward
    Tensor3 gA = empty_like(ref.grad_A), gb = empty_like(ref.grad_b);
    Tensor2 gh0 = empty_like(ref.grad_h0);
    DeviceBuffer dgA(dt.kind, dt.size, gA.data), dgb(dt.kind, dt.size, gb.data), dgh0(dt.kind, dt.size, gh0.data);
    BlockScanBackwardParams p;
    p.dtype = dt.kind;
    p.shape = shape;
    p.A = c3(dA, in.A);
    p.h = c3(dhin, h_in);
    p.h0 = c2(dh0, in.h0, c.h0);
    p.grad_h = c.grad_h ? c3(dg, in.g) : ConstOperand3{};
    p.grad_h_last = c2(dgl, in.gl, c.grad_h_last);
    p.grad_A = o3(dgA, gA);
    p.grad_b = o3(dgb, gb);
    p.grad_h0 = o2(dgh0, gh0, c.h_last);
    p.lower_triangular = c.lower;
    const int err = run(kb::backward_chunked, kc::block_scan_backward, p);
    if (err != 0) {
      report("backward", "call", desc, Check{0, false, "error " + std::to_string(err)});
    } else {
      const Vec outA = dgA.download();
      report("backward", "grad_A", desc, compare(outA, ref.grad_A.data, dt));
      report("backward", "grad_b", desc, compare(dgb.download(), ref.grad_b.data, dt));
      report("backward", "grad_h0", desc, compare(dgh0.download(), c.h_last ? ref.grad_h0.data : gh0.data, dt));
      if (c.lower) {
        bool zero = true;
        for (int b = 0; b < c.B; ++b)
          for (int t = 0; t < c.T; ++t)
            for (int ch = 0; ch < c.C; ++ch) zero = zero && outA[gA.at(b, t, ch) + 1] == 0.0;
        report("backward", "grad_A01==0", desc, Check{0, zero, "grad_A[0][1] not exactly 0"});
      }
    }
  }
  {  // summary
    Tensor2 M = empty_like(ref.M), E = empty_like(ref.E);
    DeviceBuffer dM(dt.kind, dt.size, M.data), dE(dt.kind, dt.size, E.data);
    BlockScanSummaryParams p;
    p.dtype = dt.kind;
    p.shape = shape;
    p.A = c3(dA, in.A);
    p.b = c3(db, in.b);
    p.M = o2(dM, M, true);
    p.E = o2(dE, E, true);
    p.lower_triangular = c.lower;
    const int err = run(kb::summary_chunked, kc::block_scan_summary, p);
    if (err != 0) {
      report("summary", "call", desc, Check{0, false, "error " + std::to_string(err)});
    } else {
      report("summary", "M", desc, compare(dM.download(), ref.M.data, dt));
      report("summary", "E", desc, compare(dE.download(), ref.E.data, dt));
    }
  }
}

// ---- the case list ---------------------------------------------------------------------------
inline std::vector<Case> cases(bool large) {
  std::vector<Case> v;
  auto add = [&](Case c) { v.push_back(c); };
  // T = 0: h_last = h0 (or 0), grad_h0 = grad_h_last (or 0), summary = (I, 0).
  add({2, 0, 3});
  add({2, 0, 3, Layout::kTimeMajor, false, false, true, true, false});
  // T = 1, one sequence and a few.
  add({1, 1, 1});
  add({3, 1, 5, Layout::kChannelMajor, true});
  // Odd T, chunk lengths the rule would not pick: 1 step, partial last chunk, one chunk, > T.
  for (int64_t chunk : {1, 2, 3, 7, 100}) {
    Case c{2, 7, 3};
    c.chunk = chunk;
    add(c);
  }
  {
    Case c{2, 101, 3, Layout::kTimeMajor, true};
    c.chunk = 10;
    c.lower = true;
    add(c);
  }
  // Many chunks per sequence (C = 1: the rule gives 71 chunks of 71 steps), oscillators.
  add({1, 5000, 1, Layout::kPacked, false, true, true, true, true, false, Regime::kNear1});
  add({1, 4999, 1, Layout::kChannelMajor, true, true, true, true, true, true, Regime::kNear1});
  add({1, 3000, 1, Layout::kPacked, false, true, true, true, true, false, Regime::kNear0});
  // C = 64: the rule gives 32 chunks of 32 steps at T = 1000.
  add({2, 1000, 64, Layout::kPacked, false, true, true, true, true, false, Regime::kMid});
  add({2, 1000, 64, Layout::kTimeMajor, true, false, false, false, true, true, Regime::kNear1});
  add({3, 257, 64, Layout::kChannelMajor, false, true, true, true, false, false, Regime::kNear1});
  add({3, 257, 64, Layout::kTimeMajor, true, true, true, false, true, true, Regime::kMid});
  // Optional operands absent: no grad at all (grads exactly zero), only grad_h_last.
  add({2, 33, 5, Layout::kPacked, false, false, false, false, false, false, Regime::kMid});
  add({2, 33, 5, Layout::kPacked, true, false, true, false, true, true, Regime::kNear0});
  if (large) {
    // Device-sized shapes: one long sequence (1024 chunks of 1024 steps), 1024 sequences
    // (64 chunks of 64 steps), and 2^16 sequences (one chunk each, no scratch).
    add({1, 1 << 20, 1, Layout::kPacked, false, true, true, true, true, false, Regime::kNear1});
    add({4, 4096, 256, Layout::kTimeMajor, true, true, true, true, true, true, Regime::kMid});
    add({64, 64, 1024, Layout::kPacked, false, true, true, true, true, false, Regime::kNear1});
  }
  return v;
}

// The chunk rule: chunks cover T with none empty, at most ceil(sqrt(T)) of them per sequence,
// and at least half of min(2^16, N ceil(sqrt(T))) items in all (enough threads when T allows).
inline void check_chunk_rule() {
  struct R { int64_t n, t; };
  for (const R r : {R{1, 1 << 20}, R{64, 1 << 20}, R{1, 5000}, R{128, 1000}, R{65536, 1000}, R{1 << 20, 7},
                    R{3, 1}, R{1, 2}, R{7, 12345}}) {
    const int64_t L = kb::chunk_length(r.n, r.t), K = (r.t + L - 1) / L;
    int64_t root = 1;
    while (root * root < r.t) ++root;
    const bool ok = L >= 1 && K * L >= r.t && (K - 1) * L < r.t && K <= root &&
                    2 * r.n * K >= std::min<int64_t>(1 << 16, r.n * root);
    expect(ok, "chunk rule N=" + std::to_string(r.n) + " T=" + std::to_string(r.t) + " -> L=" + std::to_string(L) +
                   " K=" + std::to_string(K) + " items=" + std::to_string(r.n * K));
  }
}

// Refusals: complex64 and a negative size are cudaErrorInvalidValue-style errors, not launches.
inline void check_refusals() {
  BlockScanForwardParams p;
  p.dtype = ScalarKind::kComplex64;
  p.shape = {1, 4, 1};
  expect(kc::block_scan_forward(p, test_stream()) != 0, "refuses complex64");
  p.dtype = ScalarKind::kFloat32;
  p.shape = {1, -1, 1};
  expect(kc::block_scan_forward(p, test_stream()) != 0, "refuses a negative size");
  p.shape = {1, 4, 1};
  expect(kc::block_scan_forward(p, test_stream()) != 0, "refuses a missing A");
}

inline int run_all(bool large) {
  check_chunk_rule();
  check_refusals();
  uint64_t seed = 1;
  for (const DType* dt : {&kF32, &kF64, &kBF16, &kF16})
    for (const Case& c : cases(large)) run_case(*dt, c, seed++);
  std::printf("block scan checks: %d ok, %d failed\n", passes, failures);
  return failures == 0 ? 0 : 1;
}

}  // namespace block_check
