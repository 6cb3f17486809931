// A Communicator decorator that holds every message for a set time before handing it on: the
// injected half of an emulated multi-host network (docs/benchmarks.md). The kernel of the
// reference machines has no netem qdisc, so link latency cannot come from the network stack;
// bandwidth limits come from tbf on the emulated hosts' links, latency from here.
//
// Rules (each a documented approximation of a network with one-way latency d):
// - send, and send_recv's outgoing half: the message leaves after d. A receive is not delayed
//   again (the sender already paid), so one hop costs d once.
// - Collectives (all_gather, all_reduce_sum, broadcast, barrier): ceil(log2 P) x d before the
//   call, the latency term of the log-depth algorithms MPI and NCCL run for small messages.
// - split(): the sub-communicator is delayed the same way.
// The wait sleeps until about 100 us before the deadline and spins for the rest, so delays of
// tens of microseconds are kept (measured in tests/comm/test_delayed_communicator.cpp).
// backend_name() is the wrapped backend's; injected_latency_s() reports d so the cost model
// can add it to alpha. MPI_Exscan needs the MPI communicator itself, so through this wrapper
// the rank scan uses its point-to-point algorithms.
#pragma once

#include <memory>

#include "seqpar/comm/forwarding_communicator.h"

namespace seqpar::comm {

class DelayedCommunicator final : public ForwardingCommunicator {
 public:
  DelayedCommunicator(std::shared_ptr<Communicator> inner, std::chrono::microseconds delay);

  double injected_latency_s() const override;
  std::chrono::microseconds delay() const { return delay_; }

 private:
  void around(Call call, bool sends, c10::function_ref<void()> forward) override;
  std::unique_ptr<Communicator> wrap(std::shared_ptr<Communicator> inner) override;
  void wait(int hops) const;
  std::chrono::microseconds delay_;
};

// `world` wrapped in a DelayedCommunicator when SEQPAR_COMM_DELAY_US is set to a positive
// number of microseconds, else `world` itself. make_world applies it.
std::unique_ptr<Communicator> with_injected_delay(std::unique_ptr<Communicator> world);

}  // namespace seqpar::comm
