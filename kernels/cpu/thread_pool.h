// A persistent pool of worker threads for the CPU kernels.
//
// The kernels schedule their own work (an atomic ticket counter, so that time tiles are
// claimed in order, which the look-back relies on); the pool only runs one function on n
// workers and waits. Threads are created once and reused: creating them per call would cost
// more than a small scan. The calling thread is worker 0. Calls from several threads at once
// are serialized.
#pragma once

#include <functional>

namespace seqpar::kernels::cpu {

// Runs fn(worker) for worker = 0..num_workers-1 concurrently and returns when all are done.
// An exception thrown by any worker is rethrown here (the first one).
void run_on_workers(int num_workers, const std::function<void(int worker)>& fn);

}  // namespace seqpar::kernels::cpu
