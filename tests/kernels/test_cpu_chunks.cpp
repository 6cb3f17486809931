// The fused chunk kernels of the matrix-state recurrences (gated DeltaNet, GLA, KDA;
// kernels/cpu/chunk_*.cpp) without LibTorch, so that they run on every compiled target,
// aarch64's under qemu included (the Python tests reach them per x86 target only):
//   forward  o and the final states against a per-step recurrence in long double, in float64
//            and float32, for decays per channel from e^-20 (the exact diagonal blocks of the
//            decayed scores) to nearly 1, odd sizes, chunk ranges (1-3 threads) and packed
//            segments (empty ones, boundaries on and off chunk edges);
//   backward every gradient at once through the directional derivative of
//            L = <o, wo> + <S_final, wS>: sum(grad . d) against central differences of the
//            kernels' own forward along random directions d (float64).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "seqpar/kernels/cpu_matrix_state.h"
#include "seqpar/kernels/plain_gemm.h"

namespace {

using seqpar::kernels::MatrixChunkBackwardParams;
using seqpar::kernels::MatrixChunkForwardParams;
using seqpar::kernels::MatrixRecurrence;
using seqpar::kernels::ScalarKind;

struct Case {
  const char* name;
  MatrixRecurrence recurrence;
  int64_t B, T, H, K, V, chunk;
  int threads;
  std::vector<int64_t> bounds;  // packed segments (B = 1), empty: one sequence per row
};

// The inputs, contiguous: q, k (B, T, H, K); v (B, T, H, V); g (B, T, H, G), G = K for GLA
// and KDA, 1 for gated DeltaNet; beta (B, T, H) (not for GLA); h0 (rows, H, K, V).
struct Inputs {
  std::vector<double> q, k, v, g, beta, h0;
};

int64_t gate_width(const Case& c) { return c.recurrence == MatrixRecurrence::kGatedDelta ? 1 : c.K; }
bool has_beta(const Case& c) { return c.recurrence != MatrixRecurrence::kGla; }
int64_t state_rows(const Case& c) {
  return c.bounds.empty() ? c.B : static_cast<int64_t>(c.bounds.size()) - 1;
}

Inputs make_inputs(const Case& c, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  Inputs x;
  const int64_t steps = c.B * c.T * c.H;
  x.q.resize(steps * c.K);
  x.k.resize(steps * c.K);
  x.v.resize(steps * c.V);
  for (auto& e : x.q) e = normal(rng);
  for (auto& e : x.v) e = normal(rng);
  for (int64_t s = 0; s < steps; ++s) {  // unit keys, as delta-rule models normalize them
    double n = 0;
    for (int64_t j = 0; j < c.K; ++j) n += std::pow(x.k[s * c.K + j] = normal(rng), 2);
    for (int64_t j = 0; j < c.K; ++j) x.k[s * c.K + j] /= std::sqrt(n);
  }
  // log decays -exp(U(-6, 3)): per step from about e^-20 to 1 - 0.0025
  x.g.resize(steps * gate_width(c));
  for (auto& e : x.g) e = -std::exp(-6.0 + 9.0 * uniform(rng));
  if (has_beta(c)) {
    x.beta.resize(steps);
    for (auto& e : x.beta) e = uniform(rng);
  }
  x.h0.resize(state_rows(c) * c.H * c.K * c.V);
  for (auto& e : x.h0) e = normal(rng);
  return x;
}

// The per-step recurrence in long double: (o (B, T, H, V), final (rows, H, K, V)).
struct Outputs {
  std::vector<double> o, final_state;
};

Outputs reference(const Case& c, const Inputs& x, double scale) {
  using L = long double;
  const int64_t K = c.K, V = c.V, H = c.H, G = gate_width(c);
  Outputs out{std::vector<double>(c.B * c.T * H * V), std::vector<double>(x.h0.size())};
  for (int64_t b = 0; b < c.B; ++b) {
    const std::vector<int64_t> spans = c.bounds.empty() ? std::vector<int64_t>{0, c.T} : c.bounds;
    for (size_t seg = 0; seg + 1 < spans.size(); ++seg) {
      const int64_t row = c.bounds.empty() ? b : static_cast<int64_t>(seg);
      for (int64_t h = 0; h < H; ++h) {
        std::vector<L> S(K * V);
        for (int64_t m = 0; m < K * V; ++m) S[m] = x.h0[(row * H + h) * K * V + m];
        for (int64_t t = spans[seg]; t < spans[seg + 1]; ++t) {
          const int64_t s = (b * c.T + t) * H + h;
          const double* q = &x.q[s * K];
          const double* k = &x.k[s * K];
          const double* v = &x.v[s * V];
          for (int64_t i = 0; i < K; ++i)
            for (int64_t j = 0; j < V; ++j) S[i * V + j] *= std::exp(L(x.g[s * G + (G == 1 ? 0 : i)]));
          if (has_beta(c)) {  // S += beta k (v - S^T k)^T
            for (int64_t j = 0; j < V; ++j) {
              L kS = 0;
              for (int64_t i = 0; i < K; ++i) kS += k[i] * S[i * V + j];
              const L w = x.beta[s] * (v[j] - kS);
              for (int64_t i = 0; i < K; ++i) S[i * V + j] += k[i] * w;
            }
          } else {
            for (int64_t i = 0; i < K; ++i)
              for (int64_t j = 0; j < V; ++j) S[i * V + j] += L(k[i]) * v[j];
          }
          for (int64_t j = 0; j < V; ++j) {
            L o = 0;
            for (int64_t i = 0; i < K; ++i) o += q[i] * S[i * V + j];
            out.o[s * V + j] = static_cast<double>(scale * o);
          }
        }
        for (int64_t m = 0; m < K * V; ++m)
          out.final_state[(row * H + h) * K * V + m] = static_cast<double>(S[m]);
      }
    }
  }
  return out;
}

// What one kernel call needs beside the inputs, in the storage type T.
template <class T>
struct KernelRun {
  Inputs in;
  std::vector<T> q, k, v, g, beta;
  std::vector<T> o;
  std::vector<T> h0, final_state, chunk_states;  // compute type = T here (float or double)
};

template <class T>
std::vector<T> cast(const std::vector<double>& x) {
  return std::vector<T>(x.begin(), x.end());
}

seqpar::kernels::MatrixChunkShape shape_of(const Case& c) {
  seqpar::kernels::MatrixChunkShape s;
  s.batch = c.B, s.time = c.T, s.heads = c.H, s.key = c.K, s.value = c.V, s.chunk = c.chunk;
  if (!c.bounds.empty()) {
    s.segment_bounds = c.bounds.data();
    s.segments = static_cast<int64_t>(c.bounds.size()) - 1;
  }
  return s;
}

// Contiguous (B, T, H, width) operand (width 1: one value per step and head).
seqpar::kernels::StepOperand step(const Case& c, const void* data, int64_t width) {
  return {data, c.T * c.H * width, c.H * width, width, width > 1 ? 1 : 0};
}

template <class T, class Params>
void set_common(const Case& c, KernelRun<T>& r, double scale, Params& p) {
  p.recurrence = c.recurrence;
  p.dtype = sizeof(T) == 8 ? ScalarKind::kFloat64 : ScalarKind::kFloat32;
  p.shape = shape_of(c);
  p.scale = scale;
  p.q = step(c, r.q.data(), c.K);
  p.k = step(c, r.k.data(), c.K);
  p.v = step(c, r.v.data(), c.V);
  p.g = step(c, r.g.data(), gate_width(c));
  if (has_beta(c)) p.beta = step(c, r.beta.data(), 1);
  p.gemm.f32 = &seqpar::kernels::plain_gemm<float>;
  p.gemm.f64 = &seqpar::kernels::plain_gemm<double>;
  p.num_threads = c.threads;
}

// The kernels' forward; fills r.o, r.final_state, r.chunk_states.
template <class T>
void forward(const Case& c, KernelRun<T>& r, double scale) {
  r.q = cast<T>(r.in.q), r.k = cast<T>(r.in.k), r.v = cast<T>(r.in.v);
  r.g = cast<T>(r.in.g), r.beta = cast<T>(r.in.beta), r.h0 = cast<T>(r.in.h0);
  MatrixChunkForwardParams p;
  set_common(c, r, scale, p);
  const int64_t KV = c.K * c.V;
  r.o.assign(c.B * c.T * c.H * c.V, T(0));
  r.final_state.assign(r.h0.size(), T(0));
  r.chunk_states.assign(c.B * c.H * p.shape.chunk_room() * KV, T(-1));
  p.initial_state = {r.h0.data(), c.H * KV, KV};
  p.o = {r.o.data(), c.T * c.H * c.V, c.H * c.V, c.V, 1};
  p.final_state = {r.final_state.data(), c.H * KV, KV};
  p.chunk_states = r.chunk_states.data();
  seqpar::kernels::cpu::matrix_chunk_forward(p);
}

double max_abs(const std::vector<double>& x) {
  double m = 0;
  for (double e : x) m = std::max(m, std::abs(e));
  return m;
}
template <class T>
double max_diff(const std::vector<T>& x, const std::vector<double>& y) {
  double m = 0;
  for (size_t i = 0; i < y.size(); ++i) m = std::max(m, std::abs(double(x[i]) - y[i]));
  return m;
}

const std::vector<Case>& cases() {
  using R = MatrixRecurrence;
  static const std::vector<Case> all = [] {
    std::vector<Case> v;
    for (auto [rec, name] : {std::pair{R::kGatedDelta, "gated_delta"}, std::pair{R::kGla, "gla"},
                             std::pair{R::kKda, "kda"}}) {
      const std::string n(name);
      v.push_back({nullptr, rec, 2, 45, 2, 5, 3, 16, 1, {}});
      v.push_back({nullptr, rec, 1, 70, 1, 4, 3, 8, 3, {}});       // 3 ranges of 3 chunks
      v.push_back({nullptr, rec, 1, 75, 1, 6, 2, 32, 1, {}});      // two 16-step sub-chunks
      v.push_back({nullptr, rec, 1, 61, 2, 4, 5, 16, 2, {0, 0, 13, 13, 40, 61}});
    }
    return v;
  }();
  return all;
}

std::string case_name(const testing::TestParamInfo<size_t>& info) {
  const Case& c = cases()[info.param];
  const char* rec = c.recurrence == MatrixRecurrence::kGla ? "gla"
                    : c.recurrence == MatrixRecurrence::kKda ? "kda" : "gated_delta";
  return std::string(rec) + "_B" + std::to_string(c.B) + "_T" + std::to_string(c.T) + "_C" +
         std::to_string(c.chunk) + "_th" + std::to_string(c.threads) +
         (c.bounds.empty() ? "" : "_packed");
}

class CpuChunks : public testing::TestWithParam<size_t> {};

TEST_P(CpuChunks, ForwardMatchesTheStepRecurrence) {
  const Case& c = cases()[GetParam()];
  const double scale = 0.7;
  KernelRun<double> r64{make_inputs(c, 1 + GetParam())};
  const Outputs ref = reference(c, r64.in, scale);
  forward(c, r64, scale);
  // float64: a chunk form's rounding over ~100 steps is ~1e-14 of the scale, so 1e-11 leaves a
  // margin without hiding a wrong term (those are O(1)); float32: 2e-5 is the matrix-state
  // Python tests' bound for float32 over a few hundred steps (measured errors ~1e-6).
  const double o_scale = std::max(1.0, max_abs(ref.o)), s_scale = std::max(1.0, max_abs(ref.final_state));
  EXPECT_LE(max_diff(r64.o, ref.o), 1e-11 * o_scale) << "float64 o";
  EXPECT_LE(max_diff(r64.final_state, ref.final_state), 1e-11 * s_scale) << "float64 final state";
  KernelRun<float> r32{r64.in};
  forward(c, r32, scale);
  EXPECT_LE(max_diff(r32.o, ref.o), 2e-5 * o_scale) << "float32 o";
  EXPECT_LE(max_diff(r32.final_state, ref.final_state), 2e-5 * s_scale) << "float32 final state";
}

// L(x + e d) for the inputs x + e d (the forward in float64).
double loss_along(const Case& c, const Inputs& x, const Inputs& d, double e,
                  const std::vector<double>& wo, const std::vector<double>& wS, double scale) {
  KernelRun<double> r;
  auto axpy = [e](const std::vector<double>& a, const std::vector<double>& b) {
    std::vector<double> y(a);
    for (size_t i = 0; i < y.size(); ++i) y[i] += e * b[i];
    return y;
  };
  r.in = {axpy(x.q, d.q), axpy(x.k, d.k), axpy(x.v, d.v), axpy(x.g, d.g), axpy(x.beta, d.beta),
          axpy(x.h0, d.h0)};
  forward(c, r, scale);
  double L = 0;
  for (size_t i = 0; i < wo.size(); ++i) L += r.o[i] * wo[i];
  for (size_t i = 0; i < wS.size(); ++i) L += r.final_state[i] * wS[i];
  return L;
}

TEST_P(CpuChunks, BackwardIsTheForwardsDerivative) {
  const Case& c = cases()[GetParam()];
  const double scale = 0.7;
  KernelRun<double> r{make_inputs(c, 100 + GetParam())};
  forward(c, r, scale);
  std::mt19937_64 rng(7 + GetParam());
  std::normal_distribution<double> normal;
  auto randn = [&](size_t n) {
    std::vector<double> x(n);
    for (auto& e : x) e = normal(rng);
    return x;
  };
  const std::vector<double> wo = randn(r.o.size()), wS = randn(r.final_state.size());
  // grad_q, grad_k, grad_v, grad_g, grad_beta, grad_h0
  Inputs grad{std::vector<double>(r.q.size()), std::vector<double>(r.k.size()),
              std::vector<double>(r.v.size()), std::vector<double>(r.g.size()),
              std::vector<double>(r.beta.size()), std::vector<double>(r.h0.size())};
  MatrixChunkBackwardParams p;
  set_common(c, r, scale, p);
  const int64_t KV = c.K * c.V;
  p.chunk_states = r.chunk_states.data();
  p.grad_o = step(c, wo.data(), c.V);
  p.grad_final_state = {wS.data(), c.H * KV, KV};
  auto out = [&](std::vector<double>& x, int64_t width) {
    auto s = step(c, x.data(), width);
    return seqpar::kernels::MutableStepOperand{x.data(), s.batch, s.time, s.head, s.channel};
  };
  p.grad_q = out(grad.q, c.K);
  p.grad_k = out(grad.k, c.K);
  p.grad_v = out(grad.v, c.V);
  p.grad_g = out(grad.g, gate_width(c));
  if (has_beta(c)) p.grad_beta = out(grad.beta, 1);
  p.grad_initial_state = {grad.h0.data(), c.H * KV, KV};
  seqpar::kernels::cpu::matrix_chunk_backward(p);

  for (int direction = 0; direction < 3; ++direction) {
    Inputs d{randn(grad.q.size()), randn(grad.k.size()), randn(grad.v.size()),
             randn(grad.g.size()), randn(grad.beta.size()), randn(grad.h0.size())};
    for (auto& e : d.g) e *= 0.1;  // keep the log decays negative along the path
    for (auto& e : d.beta) e *= 0.1;
    double analytic = 0, size = 0;
    auto add = [&](const std::vector<double>& gx, const std::vector<double>& dx) {
      for (size_t i = 0; i < gx.size(); ++i) {
        analytic += gx[i] * dx[i];
        size += std::abs(gx[i] * dx[i]);
      }
    };
    add(grad.q, d.q), add(grad.k, d.k), add(grad.v, d.v), add(grad.g, d.g);
    add(grad.beta, d.beta), add(grad.h0, d.h0);
    // Central differences with e = 1e-5: truncation O(e^2) ~ 1e-10 and rounding ~1e-16 / e
    // ~ 1e-11 of the terms' size, so 1e-7 of it is a margin; a gradient off by 1e-5 of it
    // fails (checked by perturbing the analytic sum once).
    const double e = 1e-5;
    const double numeric = (loss_along(c, r.in, d, e, wo, wS, scale) -
                            loss_along(c, r.in, d, -e, wo, wS, scale)) / (2 * e);
    EXPECT_NEAR(analytic, numeric, 1e-7 * std::max(1.0, size))
        << "direction " << direction << " (sum of |terms| " << size << ")";
  }
}

INSTANTIATE_TEST_SUITE_P(Recurrences, CpuChunks,
                         testing::Range<size_t>(0, cases().size()), case_name);

}  // namespace
