// A rank that never arrives: rank 1 sleeps past the deadline; rank 0 waits in recv from it and
// the others in all_reduce_sum. Every waiting rank must throw CommTimeoutError naming the call
// (and the peer, for recv) within the deadline plus a margin, instead of hanging.
//
// The surviving ranks exit with std::_Exit right after reporting: the abandoned operations
// cannot be finalized cleanly. ctest therefore judges this program by its output
// (PASS_REGULAR_EXPRESSION "rank 0: timeout-ok"), not by mpirun's exit code.
#include <chrono>
#include <cstdio>
#include <thread>

#include "seqpar/comm/mpi_communicator.h"

using namespace seqpar::comm;

int main() {
  ensure_mpi_initialized();
  MpiCommunicator comm;
  const auto deadline = std::chrono::milliseconds(1500);
  comm.set_timeout(deadline);
  const int r = comm.rank(), victim = 1;
  if (comm.size() < 2) {
    std::printf("rank 0: timeout-ok (skipped: needs two ranks)\n");
    return 0;
  }
  comm.barrier();  // everybody is alive up to here
  if (r == victim) {
    std::this_thread::sleep_for(deadline * 3);
    std::fflush(stdout);
    std::_Exit(0);
  }
  std::vector<double> v(16, 1.0);
  const auto t0 = std::chrono::steady_clock::now();
  bool ok = false;
  std::string what;
  try {
    if (r == 0) {
      comm.recv(host_buffer(v.data(), v.size() * 8, DataType::kFloat64), victim, 5);
    } else {
      comm.all_reduce_sum(host_buffer(v.data(), v.size() * 8, DataType::kFloat64));
    }
    what = "returned without error";
  } catch (const CommTimeoutError& e) {
    what = e.what();
    const std::string call = r == 0 ? "recv" : "all_reduce_sum";
    ok = what.find(call) != std::string::npos &&
         (r != 0 || (what.find("peer 1") != std::string::npos && e.peer() == victim));
  } catch (const std::exception& e) {
    what = std::string("wrong exception type: ") + e.what();
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ok = ok && seconds >= 1.4 && seconds < 5.0;
  std::printf("rank %d: timeout-%s after %.2f s: %s\n", r, ok ? "ok" : "FAIL", seconds,
              what.c_str());
  // Later calls on the broken communicator fail at once instead of waiting again.
  try {
    comm.barrier();
    std::printf("rank %d: timeout-FAIL: barrier after a timeout did not throw\n", r);
  } catch (const CommError&) {
  }
  std::fflush(stdout);
  std::_Exit(ok ? 0 : 1);
}
