// NCCL implementation of Communicator (built when SEQPAR_HAVE_NCCL).
//
// Work runs on a dedicated communication stream. Each call hands off with events, never a
// device-wide sync: the comm stream waits for an event recorded on the caller's stream (the
// data is ready), runs the NCCL calls, and the caller's stream waits for an event recorded
// after them (the result is ready). The communicator is created non-blocking
// (ncclConfig_t.blocking = 0) and the host then waits for each call's completion event with
// the deadline, polling cudaEventQuery and ncclCommGetAsyncError; when the deadline passes
// the communicator is aborted with ncclCommAbort (which also releases any kernel stuck on a
// dead peer) and CommTimeoutError is thrown. Host buffers are staged through device scratch
// memory on the comm stream.
#pragma once

#include <nccl.h>

#include <memory>

#include "seqpar/comm/communicator.h"

namespace seqpar::comm {

class NcclCommunicator final : public Communicator {
 public:
  // Collective over the `size` ranks sharing `id`. Uses the current CUDA device unless
  // device >= 0, in which case that device is made current first.
  NcclCommunicator(const ncclUniqueId& id, int rank, int size, int device,
                   std::chrono::milliseconds timeout);
  ~NcclCommunicator() override;
  NcclCommunicator(NcclCommunicator&& other) noexcept;
  NcclCommunicator& operator=(NcclCommunicator&& other) noexcept;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend_name() const override { return "nccl"; }

  void send(ConstBuffer buffer, int dst, int tag, Stream stream = {}) override;
  void recv(MutableBuffer buffer, int src, int tag, Stream stream = {}) override;
  void send_recv(ConstBuffer send_buffer, int dst, MutableBuffer recv_buffer, int src, int tag,
                 Stream stream = {}) override;
  void all_gather(ConstBuffer send, MutableBuffer recv, Stream stream = {}) override;
  void all_reduce_sum(MutableBuffer buffer, Stream stream = {}) override;
  void broadcast(MutableBuffer buffer, int root, Stream stream = {}) override;
  void barrier() override;
  std::unique_ptr<Communicator> split(int color, int key) override;

  ncclComm_t nccl_comm() const { return comm_; }
  void* comm_stream() const { return comm_stream_; }
  int device() const { return device_; }

 private:
  struct Adopt {};
  NcclCommunicator(Adopt, ncclComm_t comm, int device, std::chrono::milliseconds timeout);
  void create_stream_and_events();
  void release() noexcept;
  // Waits (host side, with the deadline) until the communicator's pending async state is
  // ncclSuccess; aborts and throws on error or timeout.
  void wait_ready(const char* call, int peer);
  // A deadline passed: aborts the communicator (which also ends a kernel stuck on a dead peer),
  // marks it broken and throws CommTimeoutError naming the call.
  [[noreturn]] void abort_after_timeout(const char* call, int peer);
  // Runs `enqueue` on the comm stream between the two event handoffs and waits for it.
  template <typename Enqueue>
  void run(const char* call, int peer, Stream stream, Enqueue&& enqueue);
  void* scratch(std::size_t bytes);  // device scratch for staged host buffers
  [[noreturn]] void fail(ncclResult_t rc, const char* call, int peer, const char* file, int line);

  ncclComm_t comm_ = nullptr;
  void* comm_stream_ = nullptr;  // cudaStream_t
  void* ready_event_ = nullptr;  // cudaEvent_t: caller's data ready
  void* done_event_ = nullptr;   // cudaEvent_t: comm work done
  void* scratch_ = nullptr;
  std::size_t scratch_bytes_ = 0;
  int rank_ = 0, size_ = 1, device_ = 0;
  bool broken_ = false;
};

}  // namespace seqpar::comm
