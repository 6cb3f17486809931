// Communicator over a c10d::ProcessGroup: whatever torch.distributed group a Python user made
// (gloo on CPU, NCCL on GPU) drives seqpar's exchanges.
//
// Data is staged into tensors the communicator allocates (one copy per message): a call that
// times out leaves its work running inside the process group, and that work must keep writing
// into memory it owns. Device buffers are ordered by the process group's own rule (work follows
// torch's current stream), so the Stream argument is ignored here: call with torch's current
// stream being the one that produced the data.
//
// The deadline is applied with Work::wait(timeout); the group's own timeout (set when it was
// created) still bounds the background work.
//
// The group is held weakly: torch.distributed owns it, and destroy_process_group() must end it
// (and join its worker threads) even while seqpar objects that used it live on, such as the
// autograd graph of an sp op's outputs held by a user's variable. A communicator whose group
// was destroyed throws CommError naming the group; every call takes a strong reference for its
// own duration only, and waits for and releases its Work objects on the calling thread
// (docs/sequence_parallel.md, "Clean exits").
#pragma once

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include <memory>
#include <string>

#include "seqpar/comm/communicator.h"

namespace seqpar::comm {

class C10dCommunicator final : public Communicator {
 public:
  explicit C10dCommunicator(const c10::intrusive_ptr<c10d::ProcessGroup>& group);
  ~C10dCommunicator() override = default;
  C10dCommunicator(C10dCommunicator&&) = default;
  C10dCommunicator& operator=(C10dCommunicator&&) = default;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend_name() const override;

  void send(ConstBuffer buffer, int dst, int tag, Stream stream = {}) override;
  void recv(MutableBuffer buffer, int src, int tag, Stream stream = {}) override;
  void send_recv(ConstBuffer send_buffer, int dst, MutableBuffer recv_buffer, int src, int tag,
                 Stream stream = {}) override;
  void all_gather(ConstBuffer send, MutableBuffer recv, Stream stream = {}) override;
  void all_reduce_sum(MutableBuffer buffer, Stream stream = {}) override;
  void broadcast(MutableBuffer buffer, int root, Stream stream = {}) override;
  void barrier() override;
  // Not supported: a wrapped group has no store to build sub-groups from. Create them in
  // Python with torch.distributed.new_group and pass their names.
  std::unique_ptr<Communicator> split(int color, int key) override;

  // Whether this communicator wraps `group` (false once that group was destroyed).
  bool wraps(const c10d::ProcessGroup* group) const;

 private:
  // The group, strongly, for one call; throws CommError if it was destroyed.
  c10::intrusive_ptr<c10d::ProcessGroup> group(const char* call) const;
  void wait(c10::intrusive_ptr<c10d::Work> work, const char* call, int peer);
  c10::weak_intrusive_ptr<c10d::ProcessGroup> group_;
  std::string backend_name_;
  int rank_ = 0, size_ = 1;
  bool host_ok_ = true;  // the group has a CPU backend; else host buffers go through CUDA
};

// The torch.distributed group registered under `group_name` (dist.group.WORLD.group_name,
// or any group's .group_name), wrapped. Throws when no such group is registered.
std::shared_ptr<Communicator> communicator_for_group(const std::string& group_name);

}  // namespace seqpar::comm
