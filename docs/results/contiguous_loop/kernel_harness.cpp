// Times the CPU kernels' forward and backward on one time-contiguous float32 sequence of 2^E
// steps, called directly (no LibTorch), best of 50 calls, on arrays whose alignment and offsets
// are chosen here: the in-cache rate of the contiguous loops (small E) and the effect of the
// five backward tensors' relative placement (README.md in this folder).
//
//   g++ -O2 -std=c++17 -Ikernels/include docs/results/contiguous_loop/kernel_harness.cpp
//     build/kernels/libseqpar_kernels.a -lpthread -o /tmp/kernel_harness   (one line)
//   SEQPAR_CPU_CAPABILITY=avx2 /tmp/kernel_harness E [THREADS]
//
// ALIGN (bytes, default 64: what posix_memalign and PyTorch's CPU allocator give a 64 MiB
// tensor, 64 bytes into a page) aligns every array, ALIGN_OUT (default ALIGN) the backward's
// outputs grad_a and grad_b; OA, OG, OH, OGA, OGB move a, grad_h, h, grad_a, grad_b by that many
// floats.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "seqpar/kernels/cpu_scan.h"

using namespace seqpar::kernels;

static long env(const char* name, long fallback) {
  const char* v = std::getenv(name);
  return v ? std::atol(v) : fallback;
}

static float* array(long n, float value, const char* offset_name,
                    const char* align_name = "ALIGN") {
  const long off = env(offset_name, 0);
  void* p = nullptr;
  if (posix_memalign(&p, env(align_name, env("ALIGN", 64)), (n + off) * sizeof(float)) != 0) std::abort();
  float* f = static_cast<float*>(p) + off;
  for (long i = 0; i < n; ++i) f[i] = value;
  return f;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s LOG2_STEPS [THREADS]\n", argv[0]);
    return 2;
  }
  const int e = std::atoi(argv[1]);
  const long T = 1L << e;
  const int threads = argc > 2 ? std::atoi(argv[2]) : 1;
  float* a = array(T, 0.9f, "OA");
  float* b = array(T, 1.0f, "OB");
  float* h = array(T, 0.0f, "OH");
  float* g = array(T, 1.0f, "OG");
  float* ga = array(T, 0.0f, "OGA", "ALIGN_OUT");
  float* gb = array(T, 0.0f, "OGB", "ALIGN_OUT");
  static float h_last, grad_h0;
  const Strides3 st{T, 1, 1};
  ScanForwardParams f;
  f.shape = {1, T, 1};
  f.a = {a, st};
  f.b = {b, st};
  f.h = {h, st};
  f.h_last = {&h_last, {1, 1}};
  f.num_threads = threads;
  ScanBackwardParams bw;
  bw.shape = {1, T, 1};
  bw.a = {a, st};
  bw.h = {h, st};
  bw.grad_h = {g, st};
  bw.grad_a = {ga, st};
  bw.grad_b = {gb, st};
  bw.grad_h0 = {&grad_h0, {1, 1}};
  bw.num_threads = threads;
  auto rate = [&](auto&& call, double bytes_per_step) {
    double best = 1e30;
    for (int r = 0; r < 50; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      call();
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return bytes_per_step * double(T) / best / 1e9;
  };
  const double fwd = rate([&] { cpu::scan_forward(f); }, 12);
  const double bwd = rate([&] { cpu::scan_backward(bw); }, 20);
  std::printf("target %s, T = 2^%d, %d thread(s): forward %.1f GB/s, backward %.1f GB/s\n",
              cpu::capability().c_str(), e, threads, fwd, bwd);
}
