// c10d backend: Communicator calls mapped onto c10d::ProcessGroup work objects.
#include "seqpar/comm/c10d_communicator.h"

#include <torch/csrc/distributed/c10d/GroupRegistry.hpp>

#include <mutex>
#include <unordered_map>

#include "error.h"

namespace seqpar::comm {
namespace {

at::ScalarType scalar_type(DataType dtype) {
  switch (dtype) {
    case DataType::kUInt8: return at::kByte;
    case DataType::kInt32: return at::kInt;
    case DataType::kInt64: return at::kLong;
    case DataType::kFloat32: return at::kFloat;
    case DataType::kFloat64: return at::kDouble;
    case DataType::kBFloat16: return at::kBFloat16;
    case DataType::kFloat16: return at::kHalf;
    case DataType::kComplex64: return at::kComplexFloat;
    case DataType::kComplex128: return at::kComplexDouble;
  }
  return at::kByte;
}

at::Device device_of(MemoryKind memory, int device) {
  return memory == MemoryKind::kHost ? at::Device(at::kCPU)
                                     : at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device));
}

// Where a buffer is staged: its own device, except host memory on a group without a CPU
// backend (NCCL), which is staged on the current CUDA device.
at::Device staging_device(MemoryKind memory, int device, bool host_ok) {
  if (memory == MemoryKind::kHost && !host_ok) return at::Device(at::kCUDA);
  return device_of(memory, device);
}

// A byte tensor on the staging device owning a copy of `buffer` (or uninitialized when
// copy=false).
at::Tensor staged_bytes(ConstBuffer buffer, bool copy, bool host_ok) {
  auto options = at::TensorOptions().dtype(at::kByte);
  at::Tensor t = at::empty({static_cast<int64_t>(buffer.bytes)},
                           options.device(staging_device(buffer.memory, buffer.device, host_ok)));
  if (copy && buffer.bytes > 0) {
    at::Tensor view = at::from_blob(const_cast<void*>(buffer.data),
                                    {static_cast<int64_t>(buffer.bytes)},
                                    options.device(device_of(buffer.memory, buffer.device)));
    t.copy_(view);
  }
  return t;
}


void unstage_bytes(const at::Tensor& staged, MutableBuffer buffer) {
  if (buffer.bytes == 0) return;
  auto options =
      at::TensorOptions().dtype(at::kByte).device(device_of(buffer.memory, buffer.device));
  at::Tensor view = at::from_blob(buffer.data, {static_cast<int64_t>(buffer.bytes)}, options);
  view.copy_(staged);
}

}  // namespace

C10dCommunicator::C10dCommunicator(const c10::intrusive_ptr<c10d::ProcessGroup>& group)
    : group_(group) {
  if (!group) throw std::invalid_argument("seqpar::comm::C10dCommunicator: null process group");
  rank_ = group->getRank();
  size_ = group->getSize();
  backend_name_ = "c10d:" + group->getBackendName();
  // A group without a CPU backend (NCCL alone) cannot move host tensors.
  try {
    host_ok_ = group->getBackend(c10::DeviceType::CPU) != nullptr;
  } catch (const std::exception&) {
    host_ok_ = false;
  }
}

std::string C10dCommunicator::backend_name() const { return backend_name_; }

bool C10dCommunicator::wraps(const c10d::ProcessGroup* group) const {
  const auto live = group_.lock();
  return live && live.get() == group;
}

c10::intrusive_ptr<c10d::ProcessGroup> C10dCommunicator::group(const char* call) const {
  auto live = group_.lock();
  if (!live) {
    SEQPAR_COMM_FAIL(CommError, backend_name_, call, rank_, -1,
                     "the torch.distributed group was destroyed (destroy_process_group) after "
                     "this seqpar object was made; run the op again on a live group");
  }
  return live;
}

void C10dCommunicator::wait(c10::intrusive_ptr<c10d::Work> work, const char* call, int peer) {
  const std::string& backend = backend_name_;
  // Released here, on the calling thread, whatever happens (docs/sequence_parallel.md).
  struct Release {
    c10::intrusive_ptr<c10d::Work>& w;
    ~Release() { w.reset(); }
  } release{work};
  try {
    if (!work->wait(timeout_)) {
      SEQPAR_COMM_FAIL(CommError, backend, call, rank_, peer, "work did not complete");
    }
  } catch (const CommError&) {
    throw;
  } catch (const std::exception& e) {
    std::string what = e.what();
    // Keep the first line: c10 errors append a long C++ stack trace.
    auto nl = what.find('\n');
    std::string first = nl == std::string::npos ? what : what.substr(0, nl);
    const bool timed_out = what.find("imed out") != std::string::npos ||
                           what.find("imeout") != std::string::npos;
    if (timed_out) {
      SEQPAR_COMM_FAIL(CommTimeoutError, backend, call, rank_, peer,
                       "not complete within " + std::to_string(timeout_.count()) +
                           " ms (a peer died, hangs, or never made the matching call): " + first);
    }
    SEQPAR_COMM_FAIL(CommError, backend, call, rank_, peer,
                     first + " (a peer may have died)");
  }
}

void C10dCommunicator::send(ConstBuffer buffer, int dst, int tag, Stream stream) {
  send_recv(buffer, dst, MutableBuffer{}, -1, tag, stream);
}

void C10dCommunicator::recv(MutableBuffer buffer, int src, int tag, Stream stream) {
  send_recv(ConstBuffer{}, -1, buffer, src, tag, stream);
}

void C10dCommunicator::send_recv(ConstBuffer send_buffer, int dst, MutableBuffer recv_buffer,
                                 int src, int tag, Stream) {
  const char* call = dst >= 0 && src >= 0 ? "send_recv" : (dst >= 0 ? "send" : "recv");
  // Process groups do not send to themselves (gloo has no self pair): copy locally.
  if (dst == rank_ && src == rank_) {
    SEQPAR_COMM_CHECK(send_buffer.bytes == recv_buffer.bytes, backend_name(), call, rank_, rank_,
                      "self message of " + std::to_string(send_buffer.bytes) + " bytes into " +
                          std::to_string(recv_buffer.bytes));
    // No transfer: stage on the buffer's own device (host memory stays on the host).
    unstage_bytes(staged_bytes(send_buffer, /*copy=*/true, /*host_ok=*/true), recv_buffer);
    return;
  }
  SEQPAR_COMM_CHECK(dst != rank_ && src != rank_, backend_name(), call, rank_, rank_,
                    "a message to itself must be a send_recv with dst == src == rank");
  const auto pg = group(call);
  std::vector<at::Tensor> sent, received;
  c10::intrusive_ptr<c10d::Work> send_work, recv_work;
  // Post the receive first so that two ranks exchanging with each other never wait on
  // each other's send.
  if (src >= 0) {
    received.push_back(staged_bytes(recv_buffer, /*copy=*/false, host_ok_));
    recv_work = pg->recv(received, src, tag);
  }
  if (dst >= 0) {
    sent.push_back(staged_bytes(send_buffer, /*copy=*/true, host_ok_));
    send_work = pg->send(sent, dst, tag);
  }
  if (send_work) wait(std::move(send_work), dst >= 0 && src >= 0 ? "send_recv(send)" : call, dst);
  if (recv_work) {
    wait(std::move(recv_work), dst >= 0 && src >= 0 ? "send_recv(recv)" : call, src);
    unstage_bytes(received[0], recv_buffer);
  }
}

void C10dCommunicator::all_gather(ConstBuffer send, MutableBuffer recv, Stream) {
  SEQPAR_COMM_CHECK(recv.bytes == send.bytes * static_cast<std::size_t>(size_), backend_name(),
                    "all_gather", rank_, -1,
                    "recv holds " + std::to_string(recv.bytes) + " bytes, expected size() x " +
                        std::to_string(send.bytes));
  std::vector<at::Tensor> inputs{staged_bytes(send, /*copy=*/true, host_ok_)};
  std::vector<std::vector<at::Tensor>> outputs(1);
  for (int r = 0; r < size_; ++r) outputs[0].push_back(at::empty_like(inputs[0]));
  wait(group("all_gather")->allgather(outputs, inputs), "all_gather", -1);
  unstage_bytes(at::cat(outputs[0]), recv);
}

void C10dCommunicator::all_reduce_sum(MutableBuffer buffer, Stream) {
  const auto elem = static_cast<int64_t>(buffer.bytes / data_type_size(buffer.dtype));
  auto options = at::TensorOptions()
                     .dtype(scalar_type(buffer.dtype))
                     .device(device_of(buffer.memory, buffer.device));
  at::Tensor staged = at::empty(
      {elem}, options.device(staging_device(buffer.memory, buffer.device, host_ok_)));
  if (elem > 0) staged.copy_(at::from_blob(buffer.data, {elem}, options));
  // Complex sums are sums of the real and imaginary parts: every backend can do those.
  std::vector<at::Tensor> tensors{staged.is_complex() ? at::view_as_real(staged) : staged};
  c10d::AllreduceOptions opts;
  opts.reduceOp = c10d::ReduceOp::SUM;
  wait(group("all_reduce_sum")->allreduce(tensors, opts), "all_reduce_sum", -1);
  if (elem > 0) at::from_blob(buffer.data, {elem}, options).copy_(staged);
}

void C10dCommunicator::broadcast(MutableBuffer buffer, int root, Stream) {
  std::vector<at::Tensor> tensors{staged_bytes(buffer, /*copy=*/rank_ == root, host_ok_)};
  c10d::BroadcastOptions opts;
  opts.rootRank = root;
  wait(group("broadcast")->broadcast(tensors, opts), "broadcast", root);
  if (rank_ != root) unstage_bytes(tensors[0], buffer);
}

void C10dCommunicator::barrier() { wait(group("barrier")->barrier(), "barrier", -1); }

std::unique_ptr<Communicator> C10dCommunicator::split(int, int) {
  SEQPAR_COMM_FAIL(CommError, backend_name(), "split", rank_, -1,
                   "a wrapped torch.distributed group cannot be split here; create the "
                   "sub-groups with torch.distributed.new_group and pass their names");
}

std::shared_ptr<Communicator> communicator_for_group(const std::string& group_name) {
  c10::intrusive_ptr<c10d::ProcessGroup> group;
  try {
    group = c10d::resolve_process_group(group_name);
  } catch (const std::exception& e) {
    std::string what = e.what();
    throw std::invalid_argument("seqpar: no torch.distributed group named '" + group_name +
                                "' (pass dist.group.WORLD.group_name or a group's .group_name): " +
                                what.substr(0, what.find('\n')));
  }
  // One wrapper per live group, so repeated calls reuse it. Neither the cache nor the wrapper
  // keeps the group alive; a group made again under the same name gets a new wrapper.
  static std::mutex mutex;
  static std::unordered_map<std::string, std::weak_ptr<Communicator>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(group_name);
  if (it != cache.end()) {
    if (auto c = it->second.lock()) {
      if (static_cast<C10dCommunicator*>(c.get())->wraps(group.get())) return c;
    }
  }
  auto c = std::make_shared<C10dCommunicator>(group);
  cache[group_name] = c;
  return c;
}

}  // namespace seqpar::comm
