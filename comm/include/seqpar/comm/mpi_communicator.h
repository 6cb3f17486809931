// MPI implementation of Communicator (built when SEQPAR_HAVE_MPI).
//
// Every call posts non-blocking MPI operations and polls them with MPI_Testall against the
// communicator's deadline, so a peer that died or never calls produces CommTimeoutError
// instead of a hang. Messages are staged through buffers the communicator owns: after a
// timeout the posted operation may still complete later, and it must then write into memory
// that is still alive, not into the caller's (possibly freed) buffer. The copy costs one memcpy
// per message, small next to MPI latency for the summary sizes the sequence scan sends.
// Device buffers are staged through host memory (cudaMemcpyAsync on the caller's stream).
#pragma once

#include <mpi.h>

#include <memory>
#include <vector>

#include "seqpar/comm/communicator.h"

namespace seqpar::comm {

// Calls MPI_Init_thread once if nobody has, and MPI_Finalize at exit in that case.
void ensure_mpi_initialized();

class MpiCommunicator final : public Communicator {
 public:
  // Duplicates `comm` so that seqpar's messages never match the application's.
  explicit MpiCommunicator(MPI_Comm comm = MPI_COMM_WORLD);
  ~MpiCommunicator() override;
  MpiCommunicator(MpiCommunicator&& other) noexcept;
  MpiCommunicator& operator=(MpiCommunicator&& other) noexcept;

  // The Communicator overrides, declared again in every backend's header (nccl_, c10d_,
  // forwarding_communicator.h): the interface repeated, not shared logic.
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend_name() const override { return "mpi"; }

  void send(ConstBuffer buffer, int dst, int tag, Stream stream = {}) override;
  void recv(MutableBuffer buffer, int src, int tag, Stream stream = {}) override;
  void send_recv(ConstBuffer send_buffer, int dst, MutableBuffer recv_buffer, int src, int tag,
                 Stream stream = {}) override;
  void all_gather(ConstBuffer send, MutableBuffer recv, Stream stream = {}) override;
  void all_reduce_sum(MutableBuffer buffer, Stream stream = {}) override;
  void broadcast(MutableBuffer buffer, int root, Stream stream = {}) override;
  void barrier() override;
  std::unique_ptr<Communicator> split(int color, int key) override;
  // MPI_Iexscan with a non-commutative user op (mpi_pair_exscan.cpp); host buffers only.
  bool offers_pair_exscan() const override { return true; }
  void pair_exscan(ConstBuffer pairs, MutableBuffer result, bool reverse) override;

  MPI_Comm mpi_comm() const { return comm_; }
  // The same group with ranks numbered in reverse (rank r -> size-1-r), created on first use;
  // lets MPI_Exscan, which only runs in rank order, scan in reverse rank order.
  MPI_Comm reversed_mpi_comm();

  // Polls `requests` until all complete or the deadline passes. On timeout the requests and
  // `staging` are parked for the life of the process, the communicator is marked broken and
  // CommTimeoutError is thrown. `call` and `peer` name what is waited for in the error.
  void wait_all(std::vector<MPI_Request>& requests, std::vector<std::vector<char>>& staging,
                const char* call, int peer);
  // Throws CommError for a non-MPI_SUCCESS return code.
  void check(int rc, const char* call, int peer, const char* file, int line) const;
  // Throws when a previous call timed out.
  void check_usable(const char* call, int peer) const;
  // Library version for error messages ("Open MPI v4.1.4 ...").
  static std::string library_version();

 private:
  void release() noexcept;
  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Comm reversed_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  bool broken_ = false;
};

}  // namespace seqpar::comm
