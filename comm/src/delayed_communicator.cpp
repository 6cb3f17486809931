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
    : inner_(std::move(inner)), delay_(delay) {
  if (!inner_) throw std::invalid_argument("DelayedCommunicator: inner communicator is null");
  if (delay_.count() < 0) {
    throw std::invalid_argument("DelayedCommunicator: delay must be >= 0 us, got " +
                                std::to_string(delay_.count()));
  }
  timeout_ = inner_->timeout();
}

double DelayedCommunicator::injected_latency_s() const {
  return 1e-6 * static_cast<double>(delay_.count()) + inner_->injected_latency_s();
}

void DelayedCommunicator::set_timeout(std::chrono::milliseconds timeout) {
  Communicator::set_timeout(timeout);
  inner_->set_timeout(timeout);
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

void DelayedCommunicator::send(ConstBuffer buffer, int dst, int tag, Stream stream) {
  wait(1);
  inner_->send(buffer, dst, tag, stream);
}

void DelayedCommunicator::recv(MutableBuffer buffer, int src, int tag, Stream stream) {
  inner_->recv(buffer, src, tag, stream);
}

void DelayedCommunicator::send_recv(ConstBuffer send_buffer, int dst, MutableBuffer recv_buffer,
                                    int src, int tag, Stream stream) {
  if (dst >= 0) wait(1);
  inner_->send_recv(send_buffer, dst, recv_buffer, src, tag, stream);
}

void DelayedCommunicator::all_gather(ConstBuffer send, MutableBuffer recv, Stream stream) {
  wait(log_rounds(size()));
  inner_->all_gather(send, recv, stream);
}

void DelayedCommunicator::all_reduce_sum(MutableBuffer buffer, Stream stream) {
  wait(log_rounds(size()));
  inner_->all_reduce_sum(buffer, stream);
}

void DelayedCommunicator::broadcast(MutableBuffer buffer, int root, Stream stream) {
  wait(log_rounds(size()));
  inner_->broadcast(buffer, root, stream);
}

void DelayedCommunicator::barrier() {
  wait(log_rounds(size()));
  inner_->barrier();
}

std::unique_ptr<Communicator> DelayedCommunicator::split(int color, int key) {
  std::shared_ptr<Communicator> sub = inner_->split(color, key);
  return std::make_unique<DelayedCommunicator>(std::move(sub), delay_);
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
