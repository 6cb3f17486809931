// Cost of packed sequences (ScanSegments) in the CPU scan: the same tokens scanned dense and
// packed into segments, forward and backward, float32, in one run. Torch-free: it calls the
// kernels on its own 2 MiB-aligned buffers (as the ops allocate their large outputs).
//
// Dense and packed calls alternate rep by rep, each after a 64 MiB cache flush, so that both
// see the same machine state (this VM's bandwidth drifts between runs); the figure is the
// ratio of the medians, packed / dense (design.md rule 9: warm-up, flush, monotonic clock,
// median, baseline in the same run).
//
//   seqpar-segments-bench [--threads N ...] [--reps R] [--log2t L] [--segments S]
// Shapes: (1, 2^L, 64) channels-last with S random segments, against dense (1, 2^L, 64); and
// (1, 64 * 2^16, 1) along time with 64 segments of 2^16 steps, against dense (64, 2^16, 1) and
// dense (1, 2^22, 1).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "seqpar/kernels/cpu_scan.h"

using namespace seqpar::kernels;

namespace {

struct Aligned {
  float* p = nullptr;
  explicit Aligned(size_t n) {
    void* q = nullptr;
    if (posix_memalign(&q, size_t(2) << 20, std::max<size_t>(n, 1) * sizeof(float)) != 0) std::abort();
    p = static_cast<float*>(q);
  }
  ~Aligned() { std::free(p); }
  Aligned(const Aligned&) = delete;
};

void fill(float* p, size_t n, float lo, float hi, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  for (size_t i = 0; i < n; ++i) p[i] = u(rng);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::vector<char> g_flush(64 << 20);
void flush() {
  for (size_t i = 0; i < g_flush.size(); i += 64) g_flush[i] += 1;
}

// Alternates the calls rep by rep; returns the median seconds of each.
std::vector<double> alternate(const std::vector<std::function<void()>>& calls, int reps) {
  std::vector<std::vector<double>> t(calls.size());
  for (auto& c : calls) c();  // warm-up (page faults of the outputs)
  for (int r = 0; r < reps; ++r)
    for (size_t i = 0; i < calls.size(); ++i) {
      flush();
      const auto t0 = std::chrono::steady_clock::now();
      calls[i]();
      t[i].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  std::vector<double> m;
  for (auto& v : t) m.push_back(median(v));
  return m;
}

// One shape: n = batch * time * channels elements per operand; `dense` lists the (batch, time,
// channels, strides) of each dense baseline over the same buffers, `packed` the segmented one.
struct View {
  const char* name;
  ScanShape shape;
  Strides3 st;
  std::vector<int64_t> bounds;  // empty: dense
};

void run_shape(const char* title, size_t n, const std::vector<View>& views, int threads, int reps) {
  Aligned a(n), b(n), h(n), g(n), ga(n), gb(n);
  fill(a.p, n, 0.5f, 1.0f, 1);
  fill(b.p, n, -1.f, 1.f, 2);
  fill(g.p, n, -1.f, 1.f, 3);
  int64_t rows = 1;
  for (const View& v : views) rows = std::max<int64_t>(rows, std::max<int64_t>(v.shape.batch, int64_t(v.bounds.size())) * v.shape.channels);
  std::vector<float> h0(rows, 0.1f), hl(rows), gl(rows, 0.2f), gh0(rows);
  std::vector<std::function<void()>> fwd, bwd;
  std::vector<ScanForwardParams> fps;
  std::vector<ScanBackwardParams> bps;
  for (const View& v : views) {
    ScanForwardParams fp;
    fp.dtype = ScalarKind::kFloat32;
    fp.shape = v.shape;
    fp.a = {a.p, v.st};
    fp.b = {b.p, v.st};
    fp.h = {h.p, v.st};
    fp.h0 = {h0.data(), {v.shape.channels, 1}};
    fp.h_last = {hl.data(), {v.shape.channels, 1}};
    fp.num_threads = threads;
    if (!v.bounds.empty()) fp.segments = {v.bounds.data(), int64_t(v.bounds.size()) - 1};
    ScanBackwardParams bp;
    bp.dtype = fp.dtype;
    bp.shape = fp.shape;
    bp.a = fp.a;
    bp.h = {h.p, v.st};
    bp.h0 = fp.h0;
    bp.grad_h = {g.p, v.st};
    bp.grad_h_last = {gl.data(), {v.shape.channels, 1}};
    bp.grad_a = {ga.p, v.st};
    bp.grad_b = {gb.p, v.st};
    bp.grad_h0 = {gh0.data(), {v.shape.channels, 1}};
    bp.num_threads = threads;
    bp.segments = fp.segments;
    fps.push_back(fp);
    bps.push_back(bp);
  }
  for (size_t i = 0; i < views.size(); ++i) {
    fwd.push_back([&fps, i] { cpu::scan_forward(fps[i]); });
    bwd.push_back([&bps, i] { cpu::scan_backward(bps[i]); });
  }
  const std::vector<double> tf = alternate(fwd, reps), tb = alternate(bwd, reps);
  const double bytes = double(n) * 4;
  std::printf("%s, %d thread%s\n", title, threads, threads > 1 ? "s" : "");
  for (size_t i = 0; i < views.size(); ++i)
    std::printf("  %-34s forward %7.2f ms (%5.1f GB/s)  backward %7.2f ms (%5.1f GB/s)  packed/this: %.3f / %.3f\n",
                views[i].name, 1e3 * tf[i], 3 * bytes / tf[i] / 1e9, 1e3 * tb[i], 5 * bytes / tb[i] / 1e9,
                tf.back() / tf[i], tb.back() / tb[i]);
  std::fflush(stdout);
}

std::vector<int64_t> random_bounds(int64_t T, int64_t segments, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> cut(1, T - 1);
  std::vector<int64_t> b = {0, T};
  while (int64_t(b.size()) < segments + 1) b.push_back(cut(rng));
  std::sort(b.begin(), b.end());
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> threads;
  int reps = 7, log2t = 22;
  int64_t segments = 1000;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--threads") {
      while (i + 1 < argc && argv[i + 1][0] != '-') threads.push_back(std::atoi(argv[++i]));
    } else if (arg == "--reps" && i + 1 < argc) {
      reps = std::atoi(argv[++i]);
    } else if (arg == "--log2t" && i + 1 < argc) {
      log2t = std::atoi(argv[++i]);
    } else if (arg == "--segments" && i + 1 < argc) {
      segments = std::atoll(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--threads N ...] [--reps R] [--log2t L] [--segments S]\n", argv[0]);
      return 2;
    }
  }
  if (threads.empty()) threads = {1, 2};
  std::printf("seqpar-segments-bench: CPU target %s, float32, medians of %d alternating reps\n",
              cpu::capability().c_str(), reps);
  const int64_t T = int64_t(1) << log2t, C = 64;
  std::vector<int64_t> every64k;
  for (int64_t t = 0; t <= (int64_t(64) << 16); t += int64_t(1) << 16) every64k.push_back(t);
  for (int th : threads) {
    const std::string title = "(1, 2^" + std::to_string(log2t) + ", 64) channels last";
    const std::string packed = std::to_string(segments) + " random segments";
    run_shape(title.c_str(), size_t(T * C),
              {{"dense", {1, T, C}, {T * C, C, 1}, {}},
               {packed.c_str(), {1, T, C}, {T * C, C, 1}, random_bounds(T, segments, 5)}},
              th, reps);
    const int64_t L = int64_t(1) << 16;
    run_shape("2^22 tokens along time (C = 1)", size_t(64 * L),
              {{"dense (64, 2^16, 1)", {64, L, 1}, {L, 1, 1}, {}},
               {"dense (1, 2^22, 1)", {1, 64 * L, 1}, {64 * L, 1, 1}, {}},
               {"(1, 2^22, 1), 64 segments of 2^16", {1, 64 * L, 1}, {64 * L, 1, 1}, every64k}},
              th, reps);
  }
  return 0;
}
