// What bounds the block scan's forward time-inner chains (docs/block_scan.md): the forward step
// h = A h + b of four float32 chains, written here with x86 intrinsics in the two forms the
// library has (kernels/cpu/block_step_simd.h: one chain per 2-lane double vector;
// kernels/cpu/block_lanes_simd.h forward_chain_quads: four chains in the lanes of two 256-bit
// vectors), beside loops that isolate the float <-> double conversions. Not part of the build.
//
//   g++ -O2 -march=x86-64-v4 docs/results/block_chain_step_micro.cpp -o /tmp/chain_micro
//   /tmp/chain_micro
//
// Prints ns per chain-step (one step of one sequence: 32 bytes of A, b, h) in cache (4 x 1024
// steps, repeated) and from memory (64 sequences x 2^16 steps, 128 MiB, in groups of four as the
// library's engine runs them), and ns per conversion instruction.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <vector>

namespace {

constexpr int kN = 4;  // chains per group
template <class S>
struct Group {
  const S* A[kN];
  const S* b[kN];
  S* h[kN];
};

// One chain per 2-lane vector: columns of A, each state component broadcast, two FMAs.
__attribute__((noinline)) void pairs(Group<float> g, long len, double* st) {
  __m128d v[kN];
  for (int c = 0; c < kN; ++c) v[c] = _mm_loadu_pd(st + 2 * c);
  for (long i = 0; i < len; ++i)
#pragma GCC unroll 4
    for (int c = 0; c < kN; ++c) {
      const __m128 a = _mm_loadu_ps(g.A[c] + 4 * i);
      const __m128d top = _mm_cvtps_pd(a), bottom = _mm_cvtps_pd(_mm_movehl_ps(a, a));
      const __m128d b = _mm_cvtps_pd(_mm_castpd_ps(_mm_load_sd((const double*)(g.b[c] + 2 * i))));
      const __m128d x = _mm_unpacklo_pd(v[c], v[c]), y = _mm_unpackhi_pd(v[c], v[c]);
      v[c] = _mm_fmadd_pd(_mm_unpacklo_pd(top, bottom), x,
                          _mm_fmadd_pd(_mm_unpackhi_pd(top, bottom), y, b));
      _mm_store_sd((double*)(g.h[c] + 2 * i), _mm_castps_pd(_mm_cvtpd_ps(v[c])));
    }
  for (int c = 0; c < kN; ++c) _mm_storeu_pd(st + 2 * c, v[c]);
}

// The same step with float64 storage: no conversions at all.
__attribute__((noinline)) void pairs_f64(Group<double> g, long len, double* st) {
  __m128d v[kN];
  for (int c = 0; c < kN; ++c) v[c] = _mm_loadu_pd(st + 2 * c);
  for (long i = 0; i < len; ++i)
#pragma GCC unroll 4
    for (int c = 0; c < kN; ++c) {
      const __m128d top = _mm_loadu_pd(g.A[c] + 4 * i), bottom = _mm_loadu_pd(g.A[c] + 4 * i + 2);
      const __m128d b = _mm_loadu_pd(g.b[c] + 2 * i);
      const __m128d x = _mm_unpacklo_pd(v[c], v[c]), y = _mm_unpackhi_pd(v[c], v[c]);
      v[c] = _mm_fmadd_pd(_mm_unpacklo_pd(top, bottom), x,
                          _mm_fmadd_pd(_mm_unpackhi_pd(top, bottom), y, b));
      _mm_storeu_pd(g.h[c] + 2 * i, v[c]);
    }
  for (int c = 0; c < kN; ++c) _mm_storeu_pd(st + 2 * c, v[c]);
}

// Only the pairs' loads and conversions (three of two lanes per chain-step), summed: no
// recurrence and no store.
__attribute__((noinline)) void conversions_only(Group<float> g, long len, double* st) {
  __m128d acc[kN];
  for (int c = 0; c < kN; ++c) acc[c] = _mm_setzero_pd();
  for (long i = 0; i < len; ++i)
#pragma GCC unroll 4
    for (int c = 0; c < kN; ++c) {
      const __m128 a = _mm_loadu_ps(g.A[c] + 4 * i);
      const __m128d top = _mm_cvtps_pd(a), bottom = _mm_cvtps_pd(_mm_movehl_ps(a, a));
      const __m128d b = _mm_cvtps_pd(_mm_castpd_ps(_mm_load_sd((const double*)(g.b[c] + 2 * i))));
      acc[c] = _mm_add_pd(acc[c], _mm_add_pd(_mm_add_pd(top, bottom), b));
    }
  for (int c = 0; c < kN; ++c) st[c] += _mm_cvtsd_f64(acc[c]);
}

// Four chains in the lanes of two 256-bit vectors (x of the four, y of the four).
__attribute__((noinline)) void quads(Group<float> g, long len, double* st) {
  __m256d x = _mm256_setr_pd(st[0], st[2], st[4], st[6]);
  __m256d y = _mm256_setr_pd(st[1], st[3], st[5], st[7]);
  for (long i = 0; i < len; ++i) {
    __m128 r0 = _mm_loadu_ps(g.A[0] + 4 * i), r1 = _mm_loadu_ps(g.A[1] + 4 * i);
    __m128 r2 = _mm_loadu_ps(g.A[2] + 4 * i), r3 = _mm_loadu_ps(g.A[3] + 4 * i);
    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);  // r0: a00 of the four chains, r1: a01, ...
    const __m256d a00 = _mm256_cvtps_pd(r0), a01 = _mm256_cvtps_pd(r1);
    const __m256d a10 = _mm256_cvtps_pd(r2), a11 = _mm256_cvtps_pd(r3);
    __m128 b01 = _mm_loadl_pi(_mm_setzero_ps(), (const __m64*)(g.b[0] + 2 * i));
    b01 = _mm_loadh_pi(b01, (const __m64*)(g.b[1] + 2 * i));
    __m128 b23 = _mm_loadl_pi(_mm_setzero_ps(), (const __m64*)(g.b[2] + 2 * i));
    b23 = _mm_loadh_pi(b23, (const __m64*)(g.b[3] + 2 * i));
    const __m256d bx = _mm256_cvtps_pd(_mm_shuffle_ps(b01, b23, _MM_SHUFFLE(2, 0, 2, 0)));
    const __m256d by = _mm256_cvtps_pd(_mm_shuffle_ps(b01, b23, _MM_SHUFFLE(3, 1, 3, 1)));
    const __m256d nx = _mm256_fmadd_pd(a00, x, _mm256_fmadd_pd(a01, y, bx));
    y = _mm256_fmadd_pd(a10, x, _mm256_fmadd_pd(a11, y, by));
    x = nx;
    const __m128 fx = _mm256_cvtpd_ps(x), fy = _mm256_cvtpd_ps(y);
    const __m128 lo = _mm_unpacklo_ps(fx, fy), hi = _mm_unpackhi_ps(fx, fy);
    _mm_storel_pi((__m64*)(g.h[0] + 2 * i), lo);
    _mm_storeh_pi((__m64*)(g.h[1] + 2 * i), lo);
    _mm_storel_pi((__m64*)(g.h[2] + 2 * i), hi);
    _mm_storeh_pi((__m64*)(g.h[3] + 2 * i), hi);
  }
  double xs[4], ys[4];
  _mm256_storeu_pd(xs, x);
  _mm256_storeu_pd(ys, y);
  for (int c = 0; c < kN; ++c) {
    st[2 * c] = xs[c];
    st[2 * c + 1] = ys[c];
  }
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Runs f over `groups` groups of four sequences of T steps, `reps` times; ns per chain-step.
template <class S, class F>
double time_chains(F f, long T, int groups, long reps, std::vector<S>* h_out = nullptr) {
  const size_t n = size_t(T) * kN * groups;
  std::vector<S> A(4 * n), b(2 * n), h(2 * n + 64);
  for (size_t i = 0; i < A.size(); ++i) A[i] = S(0.5 * double((i * 2654435761u) % 1000) / 1000.0);
  for (size_t i = 0; i < b.size(); ++i) b[i] = S(0.001 * double(i % 7));
  double st[2 * kN] = {};
  const auto run = [&] {
    for (int gi = 0; gi < groups; ++gi) {
      Group<S> g;
      for (int c = 0; c < kN; ++c) {
        const size_t seq = size_t(gi) * kN + c;
        g.A[c] = A.data() + 4 * T * seq;
        g.b[c] = b.data() + 2 * T * seq;
        g.h[c] = h.data() + 16 + 2 * T * seq;  // h off b's 4 KiB alignment
      }
      f(g, T, st);
    }
  };
  run();  // touch every page
  const auto t0 = std::chrono::steady_clock::now();
  for (long r = 0; r < reps; ++r) run();
  const double s = seconds_since(t0);
  if (h_out) *h_out = h;
  return s / (double(T) * kN * groups * reps) * 1e9;
}

// ns per conversion instruction, two, four or eight floats to doubles, independent chains.
template <int kLanes>
double conversion_ns() {
  constexpr long kIters = 200000000;
  __m128 f = _mm_set1_ps(1.0f);
  __m256 f8 = _mm256_set1_ps(1.0f);
  __m128d a0 = _mm_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
  __m256d b0 = _mm256_setzero_pd(), b1 = b0, b2 = b0, b3 = b0;
  __m512d c0 = _mm512_setzero_pd(), c1 = c0, c2 = c0, c3 = c0;
  const auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < kIters; ++i) {
    asm volatile("" : "+x"(f), "+x"(f8));  // keep the conversions in the loop
    if (kLanes == 2) {
      a0 = _mm_cvtps_pd(f), a1 = _mm_cvtps_pd(f), a2 = _mm_cvtps_pd(f), a3 = _mm_cvtps_pd(f);
      asm volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3));
    } else if (kLanes == 4) {
      b0 = _mm256_cvtps_pd(f), b1 = _mm256_cvtps_pd(f), b2 = _mm256_cvtps_pd(f),
      b3 = _mm256_cvtps_pd(f);
      asm volatile("" : "+x"(b0), "+x"(b1), "+x"(b2), "+x"(b3));
    } else {
      c0 = _mm512_cvtps_pd(f8), c1 = _mm512_cvtps_pd(f8), c2 = _mm512_cvtps_pd(f8),
      c3 = _mm512_cvtps_pd(f8);
      asm volatile("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3));
    }
  }
  return seconds_since(t0) / (4.0 * kIters) * 1e9;
}

// ns per dependent scalar add (3 cycles on current x86 cores): the clock.
double add_latency_ns() {
  constexpr long kIters = 300000000;
  double x = 1.0;
  const auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < kIters; ++i) asm volatile("addsd %1, %0" : "+x"(x) : "x"(1e-9));
  return seconds_since(t0) / kIters * 1e9;
}

}  // namespace

int main() {
  const double add = add_latency_ns();
  std::printf("dependent addsd: %.3f ns (%.2f GHz if 3 cycles)\n", add, 3.0 / add);
  for (int lanes : {2, 4, 8}) {
    const double ns = lanes == 2 ? conversion_ns<2>() : lanes == 4 ? conversion_ns<4>()
                                                                    : conversion_ns<8>();
    std::printf("vcvtps2pd, %d floats: %.3f ns per instruction, %.3f per float\n", lanes, ns,
                ns / lanes);
  }
  std::vector<float> h_pairs, h_quads;
  std::printf("in cache (4 sequences x 1024 steps, ns per chain-step):\n");
  std::printf("  pairs (2-lane step)          %.3f\n", time_chains<float>(pairs, 1024, 1, 20000));
  std::printf("  pairs, float64 storage       %.3f\n",
              time_chains<double>(pairs_f64, 1024, 1, 20000));
  std::printf("  pairs' conversions only      %.3f\n",
              time_chains<float>(conversions_only, 1024, 1, 20000));
  std::printf("  quads (4 chains per vector)  %.3f\n", time_chains<float>(quads, 1024, 1, 20000));
  std::printf("from memory (64 sequences x 65536 steps, ns per chain-step, GB/s at 32 B):\n");
  const double mp = time_chains<float>(pairs, 65536, 16, 3, &h_pairs);
  const double mq = time_chains<float>(quads, 65536, 16, 3, &h_quads);
  std::printf("  pairs  %.3f  %.1f\n  quads  %.3f  %.1f\n", mp, 32 / mp, mq, 32 / mq);
  float worst = 0;
  for (size_t i = 0; i < h_pairs.size(); ++i) worst = std::max(worst, std::fabs(h_pairs[i] - h_quads[i]));
  std::printf("largest |h_pairs - h_quads|: %g (the same operations, so 0)\n", worst);
}
