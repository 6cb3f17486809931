// See thread_pool.h. One generation counter wakes the workers; each worker that takes part in
// a generation decrements `pending` when done.
#include "thread_pool.h"

#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include <unistd.h>

namespace seqpar::kernels::cpu {
namespace {

class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }

  void run(int num_workers, const std::function<void(int)>& fn) {
    if (num_workers <= 1) {
      fn(0);
      return;
    }
    std::lock_guard<std::mutex> call_lock(call_mu_);
    grow(num_workers - 1);
    {
      std::lock_guard<std::mutex> lock(mu_);
      fn_ = &fn;
      active_ = num_workers - 1;
      pending_ = num_workers - 1;
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    std::exception_ptr caller_error;
    try {
      fn(0);
    } catch (...) {
      caller_error = std::current_exception();
    }
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [&] { return pending_ == 0; });
    fn_ = nullptr;
    if (caller_error) std::rethrow_exception(caller_error);
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void grow(int n) {
    while (static_cast<int>(threads_.size()) < n) {
      const int index = static_cast<int>(threads_.size());
      uint64_t current;
      {
        std::lock_guard<std::mutex> lock(mu_);
        current = generation_;
      }
      // The worker must wait for the generation after `current` even if it starts running
      // only after run() has published it.
      threads_.emplace_back([this, index, current] { loop(index, current); });
    }
  }

  void loop(int index, uint64_t seen) {
    for (;;) {
      const std::function<void(int)>* fn = nullptr;
      {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        if (index >= active_) continue;
        fn = fn_;
      }
      std::exception_ptr err;
      try {
        (*fn)(index + 1);
      } catch (...) {
        err = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (err && !error_) error_ = err;
        if (--pending_ == 0) done_.notify_one();
      }
    }
  }

  std::mutex call_mu_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> threads_;
  const std::function<void(int)>* fn_ = nullptr;
  uint64_t generation_ = 0;
  int active_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

// The pool is created on first use and never destroyed: joining threads during static
// destruction races with other libraries' teardown. A process forked after the pool started
// has no workers, so it gets a fresh pool (the old one is leaked on purpose).
Pool& pool() {
  static Pool* p = nullptr;
  static pid_t owner = 0;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  if (p == nullptr || owner != getpid()) {
    p = new Pool();
    owner = getpid();
  }
  return *p;
}

}  // namespace

void run_on_workers(int num_workers, const std::function<void(int)>& fn) {
  pool().run(num_workers, fn);
}

}  // namespace seqpar::kernels::cpu
