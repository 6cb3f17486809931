// ForwardingCommunicator (seqpar/comm/forwarding_communicator.h).
#include "seqpar/comm/forwarding_communicator.h"

#include <stdexcept>

namespace seqpar::comm {

ForwardingCommunicator::ForwardingCommunicator(std::shared_ptr<Communicator> inner, const char* who)
    : inner_(std::move(inner)) {
  if (!inner_) throw std::invalid_argument(std::string(who) + ": inner communicator is null");
  timeout_ = inner_->timeout();
}

void ForwardingCommunicator::set_timeout(std::chrono::milliseconds timeout) {
  Communicator::set_timeout(timeout);
  inner_->set_timeout(timeout);
}

void ForwardingCommunicator::around(Call, bool, c10::function_ref<void()> forward) {
  forward();
}

void ForwardingCommunicator::send(ConstBuffer buffer, int dst, int tag, Stream stream) {
  around(Call::kSend, true, [&] { inner_->send(buffer, dst, tag, stream); });
}

void ForwardingCommunicator::recv(MutableBuffer buffer, int src, int tag, Stream stream) {
  around(Call::kRecv, false, [&] { inner_->recv(buffer, src, tag, stream); });
}

void ForwardingCommunicator::send_recv(ConstBuffer send_buffer, int dst, MutableBuffer recv_buffer,
                                       int src, int tag, Stream stream) {
  around(Call::kSendRecv, dst >= 0,
         [&] { inner_->send_recv(send_buffer, dst, recv_buffer, src, tag, stream); });
}

void ForwardingCommunicator::all_gather(ConstBuffer send, MutableBuffer recv, Stream stream) {
  around(Call::kAllGather, true, [&] { inner_->all_gather(send, recv, stream); });
}

void ForwardingCommunicator::all_reduce_sum(MutableBuffer buffer, Stream stream) {
  around(Call::kAllReduceSum, true, [&] { inner_->all_reduce_sum(buffer, stream); });
}

void ForwardingCommunicator::broadcast(MutableBuffer buffer, int root, Stream stream) {
  around(Call::kBroadcast, true, [&] { inner_->broadcast(buffer, root, stream); });
}

void ForwardingCommunicator::barrier() {
  around(Call::kBarrier, true, [&] { inner_->barrier(); });
}

std::unique_ptr<Communicator> ForwardingCommunicator::split(int color, int key) {
  return wrap(std::shared_ptr<Communicator>(inner_->split(color, key)));
}

}  // namespace seqpar::comm
