// A Communicator that hands every call to another one, with one hook around each call: the
// base of decorators that add something to a backend without changing what it moves
// (DelayedCommunicator injects latency; seqpar-bench's train_step times the calls). A
// decorator overrides around() and wrap(); it does not re-forward the eleven calls itself.
#pragma once

#include <c10/util/FunctionRef.h>

#include <memory>
#include <string>

#include "seqpar/comm/communicator.h"

namespace seqpar::comm {

class ForwardingCommunicator : public Communicator {
 public:
  // Which call around() is running. kSendRecv carries whether it sends (dst >= 0).
  enum class Call { kSend, kRecv, kSendRecv, kAllGather, kAllReduceSum, kBroadcast, kBarrier };

  // Throws std::invalid_argument naming `who` when `inner` is null. Starts with the inner
  // communicator's timeout.
  ForwardingCommunicator(std::shared_ptr<Communicator> inner, const char* who);

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  std::string backend_name() const override { return inner_->backend_name(); }
  double injected_latency_s() const override { return inner_->injected_latency_s(); }
  void set_timeout(std::chrono::milliseconds timeout) override;

  void send(ConstBuffer buffer, int dst, int tag, Stream stream = {}) final;
  void recv(MutableBuffer buffer, int src, int tag, Stream stream = {}) final;
  void send_recv(ConstBuffer send_buffer, int dst, MutableBuffer recv_buffer, int src, int tag,
                 Stream stream = {}) final;
  void all_gather(ConstBuffer send, MutableBuffer recv, Stream stream = {}) final;
  void all_reduce_sum(MutableBuffer buffer, Stream stream = {}) final;
  void broadcast(MutableBuffer buffer, int root, Stream stream = {}) final;
  void barrier() final;
  // The inner communicator's split, decorated by wrap().
  std::unique_ptr<Communicator> split(int color, int key) final;
  // pair_exscan is not forwarded (the base's default: not offered): a decorator's hook could
  // not see inside the library call, so the exchange it decorates runs by messages it can.

  Communicator& inner() { return *inner_; }

 protected:
  // Runs `forward` (the call on the inner communicator); the default just runs it. `sends` is
  // false only for a send_recv without a destination. A function_ref, not a std::function:
  // nothing is allocated per call.
  virtual void around(Call call, bool sends, c10::function_ref<void()> forward);
  // The same decorator around a sub-communicator of the inner one (split()).
  virtual std::unique_ptr<Communicator> wrap(std::shared_ptr<Communicator> inner) = 0;

 private:
  std::shared_ptr<Communicator> inner_;
};

}  // namespace seqpar::comm
