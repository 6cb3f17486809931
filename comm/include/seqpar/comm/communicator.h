// The transport seqpar's sequence-parallel scan runs on: a small Communicator interface with
// MPI, NCCL and c10d::ProcessGroup implementations (docs/design.md section 4). bootstrap.h
// builds one from the mpirun or torchrun environment; comm_error.h has the errors it throws.
//
// Design choices that are not obvious:
// - Buffers are plain (pointer, bytes, dtype, memory kind) descriptions, not tensors, so the
//   interface has no torch header and an MPI- or NCCL-only program can use it. The c10d
//   implementation wraps the buffers in tensors without copying.
// - Every call is blocking from the host's point of view for host buffers. For device buffers
//   the work is ordered after everything already queued on the caller's stream (`stream`), and
//   the caller's stream waits for it (an event handoff, never a device-wide sync): the result
//   is ready for kernels queued on that stream afterwards.
// - Every blocking wait has a deadline (timeout()). A peer that dies or never arrives makes the
//   call throw CommTimeoutError naming the call and the peer instead of hanging. After a
//   timeout the communicator is broken (its peers may be mid-message) and every later call
//   throws; the program is expected to exit.
// - Errors carry the call, this rank, the peer (or -1 for collectives), the library version
//   and file:line of the failing check (docs/design.md rule 6).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "seqpar/comm/comm_error.h"

namespace seqpar::comm {

enum class DataType : int {
  kUInt8,
  kInt32,
  kInt64,
  kFloat32,
  kFloat64,
  kBFloat16,
  kFloat16,
  kComplex64,   // two float32
  kComplex128,  // two float64
};
std::size_t data_type_size(DataType dtype);
const char* data_type_name(DataType dtype);

enum class MemoryKind : int { kHost, kDevice };

// A CUDA stream (cudaStream_t) as an opaque handle so this header needs no CUDA include.
// nullptr is the legacy default stream; ignored for host buffers.
struct Stream {
  void* handle = nullptr;
};

// A contiguous buffer of bytes / data_type_size(dtype) elements. `device` is the CUDA device
// ordinal for MemoryKind::kDevice.
struct ConstBuffer {
  const void* data = nullptr;
  std::size_t bytes = 0;
  DataType dtype = DataType::kUInt8;
  MemoryKind memory = MemoryKind::kHost;
  int device = -1;
};
struct MutableBuffer {
  void* data = nullptr;
  std::size_t bytes = 0;
  DataType dtype = DataType::kUInt8;
  MemoryKind memory = MemoryKind::kHost;
  int device = -1;

  operator ConstBuffer() const { return {data, bytes, dtype, memory, device}; }
};

inline ConstBuffer host_buffer(const void* data, std::size_t bytes, DataType dtype) {
  return {data, bytes, dtype, MemoryKind::kHost, -1};
}
inline MutableBuffer host_buffer(void* data, std::size_t bytes, DataType dtype) {
  return {data, bytes, dtype, MemoryKind::kHost, -1};
}

// One group of ranks. Implementations are RAII (the destructor releases the MPI communicator,
// NCCL comm or process-group reference), non-copyable and movable. All members except
// rank(), size(), backend_name(), timeout() and set_timeout() are collective or point-to-point
// calls that every rank involved must make in the same order.
class Communicator {
 public:
  Communicator() = default;
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  Communicator(Communicator&&) = default;
  Communicator& operator=(Communicator&&) = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "mpi", "nccl" or "c10d:<backend>" (e.g. "c10d:gloo").
  virtual std::string backend_name() const = 0;
  // Latency added to every message on purpose (emulated networks: DelayedCommunicator); the
  // rank scan's cost model adds it to alpha. 0 for real transports.
  virtual double injected_latency_s() const { return 0.0; }

  // Deadline of each blocking call. Default: SEQPAR_COMM_TIMEOUT_MS or 300 s.
  std::chrono::milliseconds timeout() const { return timeout_; }
  virtual void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }

  // Point to point. A message is matched by (peer, tag); sizes must agree.
  virtual void send(ConstBuffer buffer, int dst, int tag, Stream stream = {}) = 0;
  virtual void recv(MutableBuffer buffer, int src, int tag, Stream stream = {}) = 0;
  // Sends to dst and receives from src concurrently; either peer may be -1 (no message).
  // The building block of tree algorithms: no ordering deadlock between the two halves.
  virtual void send_recv(ConstBuffer send_buffer, int dst, MutableBuffer recv_buffer, int src,
                         int tag, Stream stream = {}) = 0;

  // Collectives. all_gather: recv holds size() blocks of send.bytes, rank i's block at i.
  virtual void all_gather(ConstBuffer send, MutableBuffer recv, Stream stream = {}) = 0;
  // In-place elementwise sum over ranks (floating, complex and integer dtypes).
  virtual void all_reduce_sum(MutableBuffer buffer, Stream stream = {}) = 0;
  virtual void broadcast(MutableBuffer buffer, int root, Stream stream = {}) = 0;
  virtual void barrier() = 0;

  // Sub-communicator of the ranks passing the same color, ordered by key (MPI_Comm_split
  // semantics). Collective over this communicator.
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;

  // An optional capability: the exclusive scan of affine pairs as one library call (MPI_Exscan
  // with a non-commutative user op). `pairs` holds this rank's n interleaved host pairs
  // (a_0, b_0, a_1, b_1, ...; dtype float32, float64, complex64 or complex128); rank r's
  // `result` (same layout) gets, elementwise, the composition of the pairs of the ranks before
  // it in rank order (after it when `reverse`), later after earlier: (a2, b2) o (a1, b1) =
  // (a2 a1, a2 b1 + b2). The first rank in that order gets no result (`result` is left as
  // it was). The cross-rank scan's exscan algorithm runs on it; communicators without it
  // (the default) leave that algorithm out.
  virtual bool offers_pair_exscan() const { return false; }
  virtual void pair_exscan(ConstBuffer pairs, MutableBuffer result, bool reverse);

 protected:
  std::chrono::milliseconds timeout_ = default_timeout();
  static std::chrono::milliseconds default_timeout();
};

}  // namespace seqpar::comm
