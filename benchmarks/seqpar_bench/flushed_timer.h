// The timer of the one-process bandwidth subcommands (local_scan, block_scan): one warm-up call,
// then the timed calls, each after touching a 64 MiB buffer so that no run starts from warm
// caches (cpu_scan_bench's method, so that their figures stay comparable).
#pragma once

#include <chrono>
#include <vector>

#include "record.h"

namespace seqpar::bench {

// One warm-up call, then `reps` timed calls, each after touching every cache line of a 64 MiB
// buffer (allocated once, as cpu_scan_bench's global was).
class FlushedTimer {
  using Clock = std::chrono::steady_clock;

 public:
  explicit FlushedTimer(int reps) : reps_(reps), flush_(64 << 20) {}
  template <class F>
  Timing operator()(F&& f, int reps = 0) {
    f();
    std::vector<double> s;
    for (int r = 0; r < (reps > 0 ? reps : reps_); ++r) {
      for (size_t i = 0; i < flush_.size(); i += 64) flush_[i] += 1;
      const auto t0 = Clock::now();
      f();
      s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    }
    return summarize(s);
  }
  int reps() const { return reps_; }

 private:
  int reps_;
  std::vector<char> flush_;
};

}  // namespace seqpar::bench
