// DelayedCommunicator (seqpar/comm/delayed_communicator.h).
#include "seqpar/comm/delayed_communicator.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>

namespace seqpar::comm {

DelayedCommunicator::DelayedCommunicator(std::shared_ptr<Communicator> inner,
                                         std::chrono::microseconds delay)
    : ForwardingCommunicator(std::move(inner), "DelayedCommunicator"), delay_(delay) {
  if (delay_.count() < 0) {
    throw std::invalid_argument("DelayedCommunicator: delay must be >= 0 us, got " +
                                std::to_string(delay_.count()));
  }
}

double DelayedCommunicator::injected_latency_s() const {
  return 1e-6 * static_cast<double>(delay_.count()) + ForwardingCommunicator::injected_latency_s();
}

void DelayedCommunicator::wait(int hops) const {
  if (hops <= 0 || delay_.count() == 0) return;
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + hops * delay_;
  const auto coarse = deadline - std::chrono::microseconds(100);
  if (Clock::now() < coarse) std::this_thread::sleep_until(coarse);
  while (Clock::now() < deadline) {
  }
}

static int log_rounds(int P) {
  int rounds = 0;
  while ((1 << rounds) < P) ++rounds;
  return rounds;
}

// One hop before a message leaves (a receive is not delayed again); ceil(log2 P) hops before a
// collective.
void DelayedCommunicator::around(Call call, bool sends, c10::function_ref<void()> forward) {
  switch (call) {
    case Call::kSend:
    case Call::kSendRecv:
      if (sends) wait(1);
      break;
    case Call::kRecv:
      break;
    default:
      wait(log_rounds(size()));
  }
  forward();
}

std::unique_ptr<Communicator> DelayedCommunicator::wrap(std::shared_ptr<Communicator> inner) {
  return std::make_unique<DelayedCommunicator>(std::move(inner), delay_);
}

std::unique_ptr<Communicator> with_injected_delay(std::unique_ptr<Communicator> world) {
  const char* env = std::getenv("SEQPAR_COMM_DELAY_US");
  if (!env || !*env) return world;
  char* end = nullptr;
  const double us = std::strtod(env, &end);
  if (end == env || *end != '\0' || !std::isfinite(us) || us < 0) {
    throw std::invalid_argument(std::string("SEQPAR_COMM_DELAY_US must be a number of "
                                            "microseconds >= 0, got '") + env + "'");
  }
  if (us == 0) return world;
  return std::make_unique<DelayedCommunicator>(
      std::shared_ptr<Communicator>(std::move(world)),
      std::chrono::microseconds(static_cast<int64_t>(std::llround(us))));
}

}  // namespace seqpar::comm
