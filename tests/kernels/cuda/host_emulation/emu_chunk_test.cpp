// Runs the CUDA chunk kernels of gated DeltaNet, KDA and GLA (kernels/cuda/chunk_*.cu, through the
// entry points of cuda_matrix_state.h: shape checks, scratch layout, forward, backward and the
// finalize kernels) on the host emulator (emu_cuda.h, emu_wmma.h) and compares outputs, final
// state and every gradient with a float64 per-step recurrence and its hand-written adjoint
// (backpropagation through the steps) written here, independent of the CPU kernels.
// float32, float64, bfloat16 and float16; K, V in {64, 128}; several chunks and a partial last
// one; with and without initial state and grad of the final state; decays near 1, near 0 and
// mixed; packed sequences (segments with their chunk table: restarts from per-sequence initial
// states, per-sequence final states, empty sequences). Exit status 1 on any failure. Used by scripts/cuda_build_check.sh:
//   g++ -std=c++17 -O2 -I<cuda>/include -I<cuda>/include/cccl -Ikernels/cuda
//       -Itests/kernels/cuda/host_emulation -Ikernels/include emu_chunk_test.cpp && ./a.out [quick]
#include "emu_cuda.h"
#include "emu_wmma.h"
#include <cmath>
#include "chunk_delta_rule.cu"
#include "chunk_gla.cu"
#include "cuda_matrix_state.cu"

#include <cstdio>
#include <random>
#include <string>
#include <vector>

using namespace seqpar::kernels;
using Vec = std::vector<double>;
namespace kc = seqpar::kernels::cuda;

static int failures = 0;

struct Problem {
  MatrixRecurrence rec;
  ScalarKind dtype;
  int B, H, T, K, V;
  bool h0, gfs;
  const char* regime;  // "mid", "near1", "near0"
  bool head_major = false;  // per-step operands stored (B, H, T, X): strided views for the kernels
  // Packed sequences: the lengths of the segments (B = 1, T their sum); the states have a row
  // per segment. Empty: every batch row is one run.
  std::vector<int> seqlens = {};
  bool packed() const { return !seqlens.empty(); }
  int state_rows() const { return packed() ? int(seqlens.size()) : B; }
};

// One run of the recurrence: steps [lo, hi) of batch row b, from and into state row `row`.
struct Run {
  int b, lo, hi, row;
};
std::vector<Run> runs_of(const Problem& p) {
  std::vector<Run> r;
  if (!p.packed()) {
    for (int b = 0; b < p.B; ++b) r.push_back({b, 0, p.T, b});
    return r;
  }
  int t = 0;
  for (size_t i = 0; i < p.seqlens.size(); ++i) {
    r.push_back({0, t, t + p.seqlens[i], int(i)});
    t += p.seqlens[i];
  }
  return r;
}

// Inputs in float64, already rounded to the kernel's dtype. Layout (B, T, H, X) contiguous;
// states (B, H, K, V).
struct Inputs {
  Vec q, k, v, g, beta, s0, dO, dST;
};
struct Outputs {
  Vec o, ST, dq, dk, dv, dg, dbeta, ds0;
};

double round_to(ScalarKind dt, double x) {
  switch (dt) {
    case ScalarKind::kFloat32: return static_cast<float>(x);
    case ScalarKind::kBFloat16: return __bfloat162float(__float2bfloat16(static_cast<float>(x)));
    case ScalarKind::kFloat16: return __half2float(__float2half(static_cast<float>(x)));
    default: return x;
  }
}
// The compute type's rounding (states are float32 except for float64 inputs).
double round_state(ScalarKind dt, double x) { return dt == ScalarKind::kFloat64 ? x : static_cast<float>(x); }

Inputs make_inputs(const Problem& p, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nrm;
  std::uniform_real_distribution<double> uni(0, 1);
  const bool gla = p.rec == MatrixRecurrence::kGla;
  const std::string r = p.regime;
  Inputs in;
  const int rows = p.B * p.T * p.H;
  in.q.resize(size_t(rows) * p.K);
  in.k.resize(size_t(rows) * p.K);
  in.v.resize(size_t(rows) * p.V);
  in.dO.resize(size_t(rows) * p.V);
  const bool key_gates = gla || p.rec == MatrixRecurrence::kKda;
  in.g.resize(size_t(rows) * (key_gates ? p.K : 1));
  for (auto& x : in.q) x = round_to(p.dtype, nrm(rng));
  for (int row = 0; row < rows; ++row) {  // unit keys, as delta-rule models normalize them
    double n2 = 0;
    std::vector<double> kk(p.K);
    for (auto& x : kk) { x = nrm(rng); n2 += x * x; }
    for (int m = 0; m < p.K; ++m) in.k[size_t(row) * p.K + m] = round_to(p.dtype, kk[m] / std::sqrt(n2));
  }
  for (auto& x : in.v) x = round_to(p.dtype, nrm(rng));
  for (auto& x : in.dO) x = round_to(p.dtype, nrm(rng));
  for (auto& x : in.g) {
    const double u = uni(rng);
    // KDA near 0: g in [-60, -5] per step and channel.
    const double lo = p.rec == MatrixRecurrence::kKda ? -5 - 55 * u : -10 - 30 * u;
    x = round_to(p.dtype, r == "near1" ? -u * 1e-4 : r == "near0" ? lo : -2 * u);
  }
  if (!gla) {
    in.beta.resize(rows);
    for (auto& x : in.beta) {
      const double u = uni(rng);
      x = round_to(p.dtype, r == "near1" ? 1 - u * 1e-3 : r == "near0" ? u * 1e-3 : u);
    }
  }
  const size_t states = size_t(p.state_rows()) * p.H * p.K * p.V;
  if (p.h0) { in.s0.resize(states); for (auto& x : in.s0) x = round_state(p.dtype, nrm(rng)); }
  if (p.gfs) { in.dST.resize(states); for (auto& x : in.dST) x = round_state(p.dtype, nrm(rng)); }
  return in;
}

// The per-step recurrence in float64 and its adjoint.
Outputs reference(const Problem& p, const Inputs& in, double scale) {
  const bool gla = p.rec == MatrixRecurrence::kGla, kda = p.rec == MatrixRecurrence::kKda;
  const int K = p.K, V = p.V, T = p.T, H = p.H;
  Outputs out;
  const int rows = p.B * T * H;
  out.o.assign(size_t(rows) * V, 0);
  out.ST.assign(size_t(p.state_rows()) * H * K * V, 0);
  out.dq.assign(size_t(rows) * K, 0);
  out.dk.assign(size_t(rows) * K, 0);
  out.dv.assign(size_t(rows) * V, 0);
  out.dg.assign(in.g.size(), 0);
  out.dbeta.assign(in.beta.size(), 0);
  out.ds0.assign(out.ST.size(), 0);
  for (const Run& run : runs_of(p))
    for (int h = 0; h < H; ++h) {
      const int b = run.b, lo = run.lo, hi = run.hi;
      const size_t so = (size_t(run.row) * H + h) * K * V;
      std::vector<Vec> S(hi - lo + 1, Vec(size_t(K) * V, 0));  // S[t - lo]: entering step t
      if (p.h0) std::copy_n(in.s0.begin() + so, K * V, S[0].begin());
      auto row = [&](int t) { return (size_t(b) * T + t) * H + h; };
      for (int t = lo; t < hi; ++t) {
        const double* q = &in.q[row(t) * K];
        const double* k = &in.k[row(t) * K];
        const double* v = &in.v[row(t) * V];
        const Vec& M = S[t - lo];
        Vec& N = S[t - lo + 1];
        if (gla) {
          const double* g = &in.g[row(t) * K];
          for (int i = 0; i < K; ++i)
            for (int j = 0; j < V; ++j) N[i * V + j] = std::exp(g[i]) * M[i * V + j] + k[i] * v[j];
        } else if (kda) {  // N = D M - beta k (k^T D M - v^T), D = diag(exp(g))
          const double* g = &in.g[row(t) * K];
          const double be = in.beta[row(t)];
          Vec DM(size_t(K) * V);
          for (int i = 0; i < K; ++i)
            for (int j = 0; j < V; ++j) DM[i * V + j] = std::exp(g[i]) * M[i * V + j];
          for (int j = 0; j < V; ++j) {
            double u = 0;
            for (int i = 0; i < K; ++i) u += k[i] * DM[i * V + j];
            for (int i = 0; i < K; ++i) N[i * V + j] = DM[i * V + j] + be * k[i] * (v[j] - u);
          }
        } else {
          const double a = std::exp(in.g[row(t)]), be = in.beta[row(t)];
          for (int j = 0; j < V; ++j) {
            double u = 0;
            for (int i = 0; i < K; ++i) u += k[i] * M[i * V + j];
            for (int i = 0; i < K; ++i) N[i * V + j] = a * (M[i * V + j] - be * k[i] * u) + be * k[i] * v[j];
          }
        }
        for (int j = 0; j < V; ++j) {
          double s = 0;
          for (int i = 0; i < K; ++i) s += N[i * V + j] * q[i];
          out.o[row(t) * V + j] = scale * s;
        }
      }
      std::copy(S.back().begin(), S.back().end(), out.ST.begin() + so);
      Vec dS(size_t(K) * V, 0);
      if (p.gfs) std::copy_n(in.dST.begin() + so, K * V, dS.begin());
      for (int t = hi - 1; t >= lo; --t) {
        const double* q = &in.q[row(t) * K];
        const double* k = &in.k[row(t) * K];
        const double* v = &in.v[row(t) * V];
        const double* dO = &in.dO[row(t) * V];
        const Vec& M = S[t - lo];
        const Vec& N = S[t - lo + 1];
        for (int i = 0; i < K; ++i) {  // o = scale N^T q
          double s = 0;
          for (int j = 0; j < V; ++j) {
            dS[i * V + j] += scale * q[i] * dO[j];
            s += N[i * V + j] * dO[j];
          }
          out.dq[row(t) * K + i] = scale * s;
        }
        Vec dM(size_t(K) * V, 0);
        if (gla) {
          const double* g = &in.g[row(t) * K];
          for (int i = 0; i < K; ++i) {
            const double a = std::exp(g[i]);
            double dk = 0, da = 0;
            for (int j = 0; j < V; ++j) {
              dk += dS[i * V + j] * v[j];
              da += dS[i * V + j] * M[i * V + j];
              dM[i * V + j] = a * dS[i * V + j];
            }
            out.dk[row(t) * K + i] = dk;
            out.dg[row(t) * K + i] = a * da;
          }
          for (int j = 0; j < V; ++j) {
            double s = 0;
            for (int i = 0; i < K; ++i) s += dS[i * V + j] * k[i];
            out.dv[row(t) * V + j] = s;
          }
        } else if (kda) {
          // With N' = D M, u = k^T N', dSk = dS^T k: dN' = dS - beta k dSk^T, dv = beta dSk,
          // dbeta = dSk . (v - u), dk = beta (dS (v - u) - N' dSk), dM = D dN',
          // dg_i = exp(g_i) <dN'_i, M_i>.
          const double* g = &in.g[row(t) * K];
          const double be = in.beta[row(t)];
          Vec DM(size_t(K) * V), u(V, 0), dSk(V, 0);
          for (int i = 0; i < K; ++i)
            for (int j = 0; j < V; ++j) DM[i * V + j] = std::exp(g[i]) * M[i * V + j];
          for (int j = 0; j < V; ++j)
            for (int i = 0; i < K; ++i) {
              u[j] += k[i] * DM[i * V + j];
              dSk[j] += dS[i * V + j] * k[i];
            }
          double db = 0;
          for (int j = 0; j < V; ++j) {
            db += dSk[j] * (v[j] - u[j]);
            out.dv[row(t) * V + j] = be * dSk[j];
          }
          out.dbeta[row(t)] = db;
          for (int i = 0; i < K; ++i) {
            double dk = 0, dg = 0;
            for (int j = 0; j < V; ++j) {
              dk += dS[i * V + j] * (v[j] - u[j]) - DM[i * V + j] * dSk[j];
              const double dN = dS[i * V + j] - be * k[i] * dSk[j];
              dg += dN * M[i * V + j];
              dM[i * V + j] = std::exp(g[i]) * dN;
            }
            out.dk[row(t) * K + i] = be * dk;
            out.dg[row(t) * K + i] = std::exp(g[i]) * dg;
          }
        } else {
          const double a = std::exp(in.g[row(t)]), be = in.beta[row(t)];
          Vec u(V, 0), dSk(V, 0);  // u = k^T M, dSk = dS^T k
          for (int j = 0; j < V; ++j)
            for (int i = 0; i < K; ++i) {
              u[j] += k[i] * M[i * V + j];
              dSk[j] += dS[i * V + j] * k[i];
            }
          double da = 0, db = 0;
          for (int i = 0; i < K; ++i)
            for (int j = 0; j < V; ++j) da += dS[i * V + j] * (M[i * V + j] - be * k[i] * u[j]);
          for (int j = 0; j < V; ++j) db += dSk[j] * (v[j] - a * u[j]);
          for (int j = 0; j < V; ++j) out.dv[row(t) * V + j] = be * dSk[j];
          for (int i = 0; i < K; ++i) {
            double dSv = 0, dSu = 0, MdSk = 0;
            for (int j = 0; j < V; ++j) {
              dSv += dS[i * V + j] * v[j];
              dSu += dS[i * V + j] * u[j];
              MdSk += M[i * V + j] * dSk[j];
            }
            out.dk[row(t) * K + i] = be * dSv - a * be * (dSu + MdSk);
            for (int j = 0; j < V; ++j) dM[i * V + j] = a * (dS[i * V + j] - be * k[i] * dSk[j]);
          }
          out.dg[row(t)] = a * da;
          out.dbeta[row(t)] = db;
        }
        dS.swap(dM);
      }
      std::copy(dS.begin(), dS.end(), out.ds0.begin() + so);
    }
  return out;
}

template <class In> In to_in(double x);
template <> float to_in<float>(double x) { return static_cast<float>(x); }
template <> double to_in<double>(double x) { return x; }
template <> __nv_bfloat16 to_in<__nv_bfloat16>(double x) { return __float2bfloat16(static_cast<float>(x)); }
template <> __half to_in<__half>(double x) { return __float2half(static_cast<float>(x)); }
double from_in(float x) { return x; }
double from_in(double x) { return x; }
double from_in(__nv_bfloat16 x) { return __bfloat162float(x); }
double from_in(__half x) { return __half2float(x); }

template <class X> std::vector<X> convert(const Vec& v) {
  std::vector<X> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = to_in<X>(v[i]);
  return r;
}
template <class X> Vec back(const std::vector<X>& v) {
  Vec r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = from_in(v[i]);
  return r;
}

double rel_err(const Vec& x, const Vec& ref) {
  double e = 0, m = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    e = std::max(e, std::abs(x[i] - ref[i]));
    m = std::max(m, std::abs(ref[i]));
    if (!std::isfinite(x[i])) return INFINITY;
  }
  return m > 0 ? e / m : e;
}

const char* dtype_name(ScalarKind k) {
  switch (k) {
    case ScalarKind::kFloat32: return "float32";
    case ScalarKind::kFloat64: return "float64";
    case ScalarKind::kBFloat16: return "bfloat16";
    default: return "float16";
  }
}

// Tolerances relative to the largest reference value: float64 rounding; float32 the CPU
// float32 tests' 5e-6 (outputs) and a little more for gradients, which sum more terms;
// 16-bit inputs: products on tensor cores with operands rounded to the input type.
// dg with decays near 0 (alpha < e^-10) is the exception: the true dg_t = alpha_t <dS_t, ...>
// is tiny, and the chunk form reaches it as a running sum of terms of ordinary size that
// cancel (the measured float64 error, 1e-10 relative to max |dg|, is float64 rounding of those
// terms), so it gets about the dtype's rounding times 1e6 (float32: 1e-2; 3.6e-3 measured).
double tolerance(ScalarKind dt, bool grad);
double tolerance(ScalarKind dt, bool grad, bool cancelling) {
  if (cancelling) return dt == ScalarKind::kFloat64 ? 1e-9 : dt == ScalarKind::kFloat32 ? 1e-2 : 5e-2;
  return tolerance(dt, grad);
}
double tolerance(ScalarKind dt, bool grad) {
  switch (dt) {
    case ScalarKind::kFloat64: return 1e-10;
    case ScalarKind::kFloat32: return grad ? 2e-5 : 5e-6;
    case ScalarKind::kBFloat16: return 3e-2;
    default: return 5e-3;
  }
}

// (B, T, H, X) <-> (B, H, T, X) storage of a per-step operand.
Vec permute_bthx(const Vec& x, int B, int T, int H, int X, bool to_head_major) {
  Vec r(x.size());
  if (x.empty()) return r;
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t)
      for (int h = 0; h < H; ++h)
        for (int j = 0; j < X; ++j) {
          const size_t bthx = ((size_t(b) * T + t) * H + h) * X + j, bhtx = ((size_t(b) * H + h) * T + t) * X + j;
          if (to_head_major) r[bhtx] = x[bthx]; else r[bthx] = x[bhtx];
        }
  return r;
}

template <class In>
void run(const Problem& p, uint64_t seed) {
  using T = typename kc::chunk::ComputeOf<In>::type;
  const bool gla = p.rec == MatrixRecurrence::kGla;
  const Inputs in = make_inputs(p, seed);
  const double scale = 1.0 / std::sqrt(double(p.K));
  const Outputs ref = reference(p, in, scale);
  const int K = p.K, V = p.V, T_ = p.T, H = p.H;
  const bool kda = p.rec == MatrixRecurrence::kKda;
  const int gw = gla || kda ? K : 1;
  auto lay = [&](const Vec& x, int width) {
    return p.head_major ? permute_bthx(x, p.B, T_, H, width, true) : x;
  };
  auto unlay = [&](const Vec& x, int width) {
    return p.head_major ? permute_bthx(x, p.B, T_, H, width, false) : x;
  };
  auto q = convert<In>(lay(in.q, K)), k = convert<In>(lay(in.k, K)), v = convert<In>(lay(in.v, V));
  auto g = convert<In>(lay(in.g, gw));
  auto beta = convert<In>(lay(in.beta, 1)), dO = convert<In>(lay(in.dO, V));
  auto s0 = convert<T>(in.s0), dST = convert<T>(in.dST);
  std::vector<In> o(ref.o.size()), dq(ref.dq.size()), dk(ref.dk.size()), dv(ref.dv.size()),
      dg(ref.dg.size()), dbeta(ref.dbeta.size());
  std::vector<T> ST(ref.ST.size()), ds0(ref.ds0.size());
  MatrixChunkShape shape{p.B, T_, H, K, V, 64};
  std::vector<int64_t> bounds(1, 0), table;
  if (p.packed()) {
    for (int len : p.seqlens) bounds.push_back(bounds.back() + len);
    shape.segment_bounds = bounds.data();
    shape.segments = int64_t(p.seqlens.size());
    table.resize(kc::matrix_chunk_table_size(shape));
    kc::fill_matrix_chunk_table(shape, table.data());
    shape.chunk_table = table.data();  // device memory is host memory on the emulator
  }
  // Saved states: chunk_room() of them, the spare ones poisoned (the forward must zero them).
  std::vector<T> states(size_t(p.B) * H * shape.chunk_room() * K * V, T(12345));
  auto step = [&](const auto& x, int width) {
    if (p.head_major)
      return StepOperand{x.data(), int64_t(T_) * H * width, width, int64_t(T_) * width, width > 1 ? 1 : 0};
    return StepOperand{x.data(), int64_t(T_) * H * width, int64_t(H) * width, width, width > 1 ? 1 : 0};
  };
  auto mstep = [&](auto& x, int width) {
    if (p.head_major)
      return MutableStepOperand{x.data(), int64_t(T_) * H * width, width, int64_t(T_) * width, width > 1 ? 1 : 0};
    return MutableStepOperand{x.data(), int64_t(T_) * H * width, int64_t(H) * width, width, width > 1 ? 1 : 0};
  };
  MatrixChunkForwardParams f;
  f.recurrence = p.rec;
  f.dtype = p.dtype;
  f.shape = shape;
  f.scale = scale;
  f.q = step(q, K);
  f.k = step(k, K);
  f.v = step(v, V);
  f.g = step(g, gw);
  if (!gla) f.beta = step(beta, 1);
  if (p.h0) f.initial_state = {s0.data(), int64_t(H) * K * V, int64_t(K) * V};
  f.o = mstep(o, V);
  f.final_state = {ST.data(), int64_t(H) * K * V, int64_t(K) * V};
  f.chunk_states = states.data();
  const auto rf = kc::cuda_matrix_chunk_forward(f, nullptr);
  MatrixChunkBackwardParams bp;
  bp.recurrence = p.rec;
  bp.dtype = p.dtype;
  bp.shape = shape;
  bp.scale = scale;
  bp.q = f.q; bp.k = f.k; bp.v = f.v; bp.g = f.g; bp.beta = f.beta;
  bp.chunk_states = states.data();
  bp.grad_o = step(dO, V);
  if (p.gfs) bp.grad_final_state = {dST.data(), int64_t(H) * K * V, int64_t(K) * V};
  bp.grad_q = mstep(dq, K);
  bp.grad_k = mstep(dk, K);
  bp.grad_v = mstep(dv, V);
  bp.grad_g = mstep(dg, gw);
  if (!gla) bp.grad_beta = mstep(dbeta, 1);
  bp.grad_initial_state = {ds0.data(), int64_t(H) * K * V, int64_t(K) * V};
  const auto rb = kc::cuda_matrix_chunk_backward(bp, nullptr);
  std::string lens;
  for (int len : p.seqlens) lens += (lens.empty() ? " seqlens=" : ",") + std::to_string(len);
  char name[320];
  std::snprintf(name, sizeof name, "%s %s B=%d H=%d T=%d K=%d V=%d h0=%d dS_T=%d %s%s%s",
                gla ? "gla" : kda ? "kda" : "gated_delta", dtype_name(p.dtype), p.B, H, T_, K, V, int(p.h0),
                int(p.gfs), p.regime, p.head_major ? " (B, H, T, X) strides" : "", lens.c_str());
  if (!rf.ok() || !rb.ok()) {
    std::printf("FAIL %s: entry returned %d/%d (%s%s)\n", name, int(rf.status), int(rb.status), rf.reason, rb.reason);
    ++failures;
    return;
  }
  struct Check { const char* what; Vec got; const Vec* want; bool grad; };
  std::vector<Check> checks = {{"o", unlay(back(o), V), &ref.o, false}, {"S_T", back(ST), &ref.ST, false},
                               {"dq", unlay(back(dq), K), &ref.dq, true}, {"dk", unlay(back(dk), K), &ref.dk, true},
                               {"dv", unlay(back(dv), V), &ref.dv, true}, {"dg", unlay(back(dg), gw), &ref.dg, true},
                               {"dS_0", back(ds0), &ref.ds0, true}};
  if (!gla) checks.push_back({"dbeta", unlay(back(dbeta), 1), &ref.dbeta, true});
  // The room past the run's chunks holds zeros.
  Vec spare;
  const int64_t used = shape.chunks(), room = shape.chunk_room();
  for (int64_t bh = 0; bh < int64_t(p.B) * H; ++bh)
    for (int64_t n = used; n < room; ++n)
      for (int64_t e = 0; e < int64_t(K) * V; ++e) spare.push_back(double(states[(bh * room + n) * K * V + e]));
  const Vec zeros(spare.size(), 0.0);
  checks.push_back({"spare", spare, &zeros, false});
  bool ok = true;
  std::string line;
  for (const auto& c : checks) {
    const double e = rel_err(c.got, *c.want);
    char buf[64];
    std::snprintf(buf, sizeof buf, " %s %.1e", c.what, e);
    line += buf;
    const bool cancelling = std::string(c.what) == "dg" && std::string(p.regime) == "near0";
    if (!(e <= tolerance(p.dtype, c.grad, cancelling))) ok = false;
  }
  std::printf("%s %s:%s\n", ok ? "ok" : "FAIL", name, line.c_str());
  std::fflush(stdout);
  if (!ok) ++failures;
}

void run_problem(const Problem& p, uint64_t seed) {
  switch (p.dtype) {
    case ScalarKind::kFloat32: return run<float>(p, seed);
    case ScalarKind::kFloat64: return run<double>(p, seed);
    case ScalarKind::kBFloat16: return run<__nv_bfloat16>(p, seed);
    default: return run<__half>(p, seed);
  }
}

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "quick";
  using R = MatrixRecurrence;
  using S = ScalarKind;
  const int T = 2 * 64 + 37;  // two full chunks and a partial one
  std::vector<Problem> problems;
  for (R r : {R::kGatedDelta, R::kGla, R::kKda}) {
    problems.push_back({r, S::kFloat64, 1, 2, T, 64, 64, true, true, "mid"});
    problems.push_back({r, S::kFloat32, 1, 1, T, 64, 64, true, true, "mid"});
    problems.push_back({r, S::kFloat32, 1, 1, T, 128, 128, false, false, "near1"});
    problems.push_back({r, S::kFloat32, 2, 1, T, 64, 128, true, false, "near0"});
    problems.push_back({r, S::kBFloat16, 1, 1, T, 64, 64, true, true, "mid"});
    problems.push_back({r, S::kFloat32, 1, 1, 0, 64, 64, true, true, "mid"});  // T = 0
    problems.push_back({r, S::kFloat32, 2, 2, 100, 64, 64, true, true, "mid", true});
    // Packed sequences (B = 1, T the sum): empty sequences first, in the middle and last;
    // sequences of one step, shorter and longer than a chunk; boundaries on chunk edges (64,
    // 128) and off them; only empty sequences; no initial state / final-state gradient.
    auto packed = [&](S dt, int H, bool h0, bool gfs, const char* regime, std::vector<int> lens,
                      bool head_major = false) {
      int sum = 0;
      for (int len : lens) sum += len;
      problems.push_back({r, dt, 1, H, sum, 64, 64, h0, gfs, regime, head_major, lens});
    };
    packed(S::kFloat64, 1, true, true, "mid", {0, 37, 64, 0, 130, 1, 0});
    packed(S::kFloat32, 2, true, true, "mid", {64, 100, 0, 29});
    packed(S::kBFloat16, 1, true, true, "mid", {0, 150, 20});
    packed(S::kFloat32, 1, true, true, "mid", {0, 0});
    packed(S::kFloat32, 1, false, false, "mid", {0, 0, 65, 63}, true);
    if (!quick) {
      packed(S::kFloat16, 1, true, false, "mid", {5, 70, 0});
      packed(S::kFloat32, 1, true, true, "near1", {1, 127, 1});
      packed(S::kFloat64, 1, false, true, "near0", {96, 33});
      problems.push_back({r, S::kFloat32, 1, 1, T, 128, 64, false, true, "mid"});
      problems.push_back({r, S::kFloat32, 1, 1, 128, 64, 64, true, true, "near1"});
      problems.push_back({r, S::kBFloat16, 1, 1, T, 128, 128, true, true, "near0"});
      problems.push_back({r, S::kFloat16, 1, 1, T, 64, 64, true, false, "mid"});
      problems.push_back({r, S::kFloat64, 1, 1, T, 64, 128, false, true, "near0"});
    }
  }
  uint64_t seed = 1;
  for (const auto& p : problems) run_problem(p, seed++);
  // Refused shapes: chunk 32, K = 32, and float64 GLA and KDA with K = 128 (their tiles
  // exceed the emulated H100's 227 KiB of shared memory).
  struct Refuse { R r; S dt; MatrixChunkShape s; };
  for (const Refuse& x : {Refuse{R::kGla, S::kFloat32, {1, 64, 1, 64, 64, 32}},
                          Refuse{R::kGatedDelta, S::kFloat32, {1, 64, 1, 32, 64, 64}},
                          Refuse{R::kGla, S::kFloat64, {1, 64, 1, 128, 128, 64}},
                          Refuse{R::kKda, S::kFloat64, {1, 64, 1, 128, 64, 64}}}) {
    const char* why = kc::matrix_chunk_unsupported(x.r, x.dt, x.s);
    std::printf("%s refused K=%ld V=%ld chunk=%ld %s: %s\n", why ? "ok" : "FAIL", long(x.s.key),
                long(x.s.value), long(x.s.chunk), dtype_name(x.dt), why ? why : "accepted");
    if (!why) ++failures;
  }
  // Shared memory per CTA (bytes; docs/cuda.md quotes this table).
  for (S dt : {S::kFloat32, S::kBFloat16, S::kFloat64})
    for (int K : {64, 128})
      std::printf("smem %s K=%d: gated_delta fwd %zu bwd %zu, gla fwd %zu bwd %zu, kda fwd %zu bwd %zu\n",
                  dtype_name(dt), K, kc::chunk::delta_smem_bytes(dt, K, false, false),
                  kc::chunk::delta_smem_bytes(dt, K, true, false), kc::chunk::gla_smem_bytes(dt, K, false),
                  kc::chunk::gla_smem_bytes(dt, K, true), kc::chunk::delta_smem_bytes(dt, K, false, true),
                  kc::chunk::delta_smem_bytes(dt, K, true, true));
  {  // packed sequences without their chunk table in device memory are refused
    const int64_t bounds[3] = {0, 30, 64};
    MatrixChunkShape s{1, 64, 1, 64, 64, 64};
    s.segment_bounds = bounds;
    s.segments = 2;
    std::vector<float> buf(64 * 64 * 4);
    MatrixChunkForwardParams f;
    f.recurrence = R::kGla;
    f.shape = s;
    f.q = f.k = f.v = f.g = {buf.data(), 64 * 64, 64, 64, 1};
    const auto r = kc::cuda_matrix_chunk_forward(f, nullptr);
    const bool ok = r.status == kc::MatrixChunkStatus::kUnsupported;
    std::printf("%s refused 2 segments without a chunk table: %s\n", ok ? "ok" : "FAIL", ok ? r.reason : "accepted");
    if (!ok) ++failures;
  }
  std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "passed", failures);
  return failures ? 1 : 0;
}
