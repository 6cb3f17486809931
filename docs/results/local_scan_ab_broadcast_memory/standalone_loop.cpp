// micro-benchmark: contiguous forward run, avx2 double lanes: permute broadcasts vs store+broadcast-load
#include <immintrin.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <cstring>
using namespace std::chrono;

// variant 0: current (permutes)
__attribute__((noinline)) void run0(const float* a, const float* b, float* h, long n, double& s) {
  __m256d vh = _mm256_set1_pd(s);
  const __m256d one = _mm256_set1_pd(1.0), zero = _mm256_setzero_pd();
  for (long k = 0; k + 4 <= n; k += 4) {
    __m256d A = _mm256_cvtps_pd(_mm_loadu_ps(a + k));
    __m256d B = _mm256_cvtps_pd(_mm_loadu_ps(b + k));
    // round 1: lanes 1,3 compose with lanes 0,2
    __m256d Ae = _mm256_unpacklo_pd(one, A);   // [1, A0, 1, A2]
    __m256d Be = _mm256_unpacklo_pd(zero, B);
    B = _mm256_fmadd_pd(A, Be, B);
    A = _mm256_mul_pd(A, Ae);
    // round 2: lanes 2,3 compose with lane 1
    __m256d A1 = _mm256_permute4x64_pd(A, 0x55), B1 = _mm256_permute4x64_pd(B, 0x55);
    Ae = _mm256_blend_pd(one, A1, 0xC);
    Be = _mm256_blend_pd(zero, B1, 0xC);
    B = _mm256_fmadd_pd(A, Be, B);
    A = _mm256_mul_pd(A, Ae);
    __m256d out = _mm256_fmadd_pd(A, vh, B);
    _mm_storeu_ps(h + k, _mm256_cvtpd_ps(out));
    vh = _mm256_fmadd_pd(_mm256_permute4x64_pd(A, 0xFF), vh, _mm256_permute4x64_pd(B, 0xFF));
  }
  s = _mm256_cvtsd_f64(vh);
}
// variant 1: broadcasts through memory
__attribute__((noinline)) void run1(const float* a, const float* b, float* h, long n, double& s) {
  __m256d vh = _mm256_set1_pd(s);
  const __m256d one = _mm256_set1_pd(1.0), zero = _mm256_setzero_pd();
  alignas(64) double bufA[4], bufB[4], bufA2[4], bufB2[4];
  for (long k = 0; k + 4 <= n; k += 4) {
    __m256d A = _mm256_cvtps_pd(_mm_loadu_ps(a + k));
    __m256d B = _mm256_cvtps_pd(_mm_loadu_ps(b + k));
    __m256d Ae = _mm256_unpacklo_pd(one, A);
    __m256d Be = _mm256_unpacklo_pd(zero, B);
    B = _mm256_fmadd_pd(A, Be, B);
    A = _mm256_mul_pd(A, Ae);
#if MODE >= 2
    _mm256_store_pd(bufA, A); _mm256_store_pd(bufB, B);
    asm volatile("" ::: "memory");
    __m256d A1 = _mm256_broadcast_sd(bufA + 1), B1 = _mm256_broadcast_sd(bufB + 1);
#else
    __m256d A1 = _mm256_permute4x64_pd(A, 0x55), B1 = _mm256_permute4x64_pd(B, 0x55);
#endif
    Ae = _mm256_blend_pd(one, A1, 0xC);
    Be = _mm256_blend_pd(zero, B1, 0xC);
    B = _mm256_fmadd_pd(A, Be, B);
    A = _mm256_mul_pd(A, Ae);
    __m256d out = _mm256_fmadd_pd(A, vh, B);
    _mm_storeu_ps(h + k, _mm256_cvtpd_ps(out));
    _mm256_store_pd(bufA2, A); _mm256_store_pd(bufB2, B);
    asm volatile("" ::: "memory");
    vh = _mm256_fmadd_pd(_mm256_broadcast_sd(bufA2 + 3), vh, _mm256_broadcast_sd(bufB2 + 3));
  }
  s = _mm256_cvtsd_f64(vh);
}
int main(int argc, char** argv) {
  long n = atol(argv[1]); int reps = atoi(argv[2]);
  std::vector<float> a(n), b(n), h0(n), h1(n);
  for (long i = 0; i < n; ++i) { a[i] = 0.9f + 0.1f * (i % 7) / 7; b[i] = (i % 13) * 0.1f - 0.6f; }
  double best0 = 1e30, best1 = 1e30;
  for (int r = 0; r < reps; ++r) {
    double s = 0; auto t0 = steady_clock::now(); run0(a.data(), b.data(), h0.data(), n, s);
    auto t1 = steady_clock::now(); double s1 = 0; run1(a.data(), b.data(), h1.data(), n, s1);
    auto t2 = steady_clock::now();
    best0 = std::min(best0, duration<double>(t1 - t0).count());
    best1 = std::min(best1, duration<double>(t2 - t1).count());
    if (memcmp(h0.data(), h1.data(), n * 4) != 0 || s != s1) { printf("MISMATCH\n"); return 1; }
  }
  printf("n=%ld  permute: %.2f GB/s   memory-bcast: %.2f GB/s\n", n, 12.0 * n / best0 / 1e9, 12.0 * n / best1 / 1e9);
}
