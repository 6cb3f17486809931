// NCCL backend (see nccl_communicator.h) and its bootstrap from mpirun or torchrun.
#include "seqpar/comm/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cstring>
#include <thread>

#include "error.h"
#include "nccl_bootstrap.h"
#ifdef SEQPAR_COMM_WITH_MPI
#include "seqpar/comm/mpi_communicator.h"
#endif

namespace seqpar::comm {
namespace {

std::string nccl_version() {
  return "nccl " + std::to_string(NCCL_MAJOR) + "." + std::to_string(NCCL_MINOR) + "." +
         std::to_string(NCCL_PATCH);
}

#define SEQPAR_CUDA_CHECK(expr, call, rank, peer)                                           \
  do {                                                                                      \
    cudaError_t _e = (expr);                                                                \
    if (_e != cudaSuccess)                                                                  \
      SEQPAR_COMM_FAIL(CommError, nccl_version(), call, rank, peer,                         \
                       std::string(#expr) + ": " + cudaGetErrorString(_e));                 \
  } while (0)

cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }
cudaEvent_t as_event(void* e) { return static_cast<cudaEvent_t>(e); }

bool sum_type(DataType dtype, ncclDataType_t* type, std::size_t* scale) {
  *scale = 1;
  switch (dtype) {
    case DataType::kUInt8: *type = ncclUint8; return true;
    case DataType::kInt32: *type = ncclInt32; return true;
    case DataType::kInt64: *type = ncclInt64; return true;
    case DataType::kFloat32: *type = ncclFloat32; return true;
    case DataType::kFloat64: *type = ncclFloat64; return true;
    case DataType::kFloat16: *type = ncclFloat16; return true;
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 10, 0)
    case DataType::kBFloat16: *type = ncclBfloat16; return true;
#endif
    // A complex sum is the sum of its real and imaginary parts.
    case DataType::kComplex64: *type = ncclFloat32, *scale = 2; return true;
    case DataType::kComplex128: *type = ncclFloat64, *scale = 2; return true;
    default: return false;
  }
}

}  // namespace

void NcclCommunicator::fail(ncclResult_t rc, const char* call, int peer, const char* file,
                            int line) {
  std::string detail = ncclGetErrorString(rc);
  if (comm_) {
    const char* last = ncclGetLastError(comm_);
    if (last && *last) detail += std::string(": ") + last;
  }
  throw CommError(nccl_version(), call, rank_, peer, detail, file, line);
}

#define SEQPAR_NCCL_CHECK(expr, call, peer)                                       \
  do {                                                                            \
    ncclResult_t _r = (expr);                                                     \
    if (_r != ncclSuccess && _r != ncclInProgress) fail(_r, call, peer, __FILE__, __LINE__); \
  } while (0)

NcclCommunicator::NcclCommunicator(const ncclUniqueId& id, int rank, int size, int device,
                                   std::chrono::milliseconds timeout)
    : rank_(rank), size_(size) {
  timeout_ = timeout;
  if (device >= 0) SEQPAR_CUDA_CHECK(cudaSetDevice(device), "cudaSetDevice", rank, -1);
  SEQPAR_CUDA_CHECK(cudaGetDevice(&device_), "cudaGetDevice", rank, -1);
  create_stream_and_events();
  // Non-blocking init: ncclCommInitRankConfig returns at once and we poll with the deadline,
  // so a rank that never joins makes the others fail instead of hanging in init.
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  SEQPAR_NCCL_CHECK(ncclCommInitRankConfig(&comm_, size, id, rank, &config),
                    "ncclCommInitRankConfig", -1);
  wait_ready("ncclCommInitRankConfig", -1);
}

NcclCommunicator::NcclCommunicator(Adopt, ncclComm_t comm, int device,
                                   std::chrono::milliseconds timeout)
    : comm_(comm), device_(device) {
  timeout_ = timeout;
  ncclCommUserRank(comm_, &rank_);
  ncclCommCount(comm_, &size_);
  create_stream_and_events();
}

void NcclCommunicator::create_stream_and_events() {
  cudaStream_t s = nullptr;
  cudaEvent_t ready = nullptr, done = nullptr;
  SEQPAR_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate",
                    rank_, -1);
  // Timing off: these events only order work.
  SEQPAR_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), "cudaEventCreate",
                    rank_, -1);
  SEQPAR_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreate",
                    rank_, -1);
  comm_stream_ = s;
  ready_event_ = ready;
  done_event_ = done;
}

void NcclCommunicator::release() noexcept {
  if (comm_) {
    // After a timeout or error the peers may be gone: abort instead of a collective destroy.
    if (broken_) {
      ncclCommAbort(comm_);
    } else {
      ncclCommDestroy(comm_);
    }
  }
  if (scratch_) cudaFree(scratch_);
  if (ready_event_) cudaEventDestroy(as_event(ready_event_));
  if (done_event_) cudaEventDestroy(as_event(done_event_));
  if (comm_stream_) cudaStreamDestroy(as_stream(comm_stream_));
  comm_ = nullptr;
  scratch_ = comm_stream_ = ready_event_ = done_event_ = nullptr;
  scratch_bytes_ = 0;
}

NcclCommunicator::~NcclCommunicator() { release(); }

NcclCommunicator::NcclCommunicator(NcclCommunicator&& other) noexcept { *this = std::move(other); }

NcclCommunicator& NcclCommunicator::operator=(NcclCommunicator&& other) noexcept {
  if (this != &other) {
    release();
    comm_ = other.comm_;
    comm_stream_ = other.comm_stream_;
    ready_event_ = other.ready_event_;
    done_event_ = other.done_event_;
    scratch_ = other.scratch_;
    scratch_bytes_ = other.scratch_bytes_;
    rank_ = other.rank_;
    size_ = other.size_;
    device_ = other.device_;
    broken_ = other.broken_;
    timeout_ = other.timeout_;
    other.comm_ = nullptr;
    other.comm_stream_ = other.ready_event_ = other.done_event_ = other.scratch_ = nullptr;
    other.scratch_bytes_ = 0;
  }
  return *this;
}

void NcclCommunicator::abort_after_timeout(const char* call, int peer) {
  broken_ = true;
  ncclCommAbort(comm_);
  comm_ = nullptr;
  SEQPAR_COMM_FAIL(CommTimeoutError, nccl_version(), call, rank_, peer,
                   "not complete after " + std::to_string(timeout_.count()) +
                       " ms; the communicator was aborted (a peer died, hangs, or never made "
                       "the matching call)");
}

void NcclCommunicator::wait_ready(const char* call, int peer) {
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  for (;;) {
    ncclResult_t state = ncclSuccess;
    ncclResult_t rc = ncclCommGetAsyncError(comm_, &state);
    if (rc != ncclSuccess) state = rc;
    if (state == ncclSuccess) return;
    if (state != ncclInProgress) {
      broken_ = true;
      fail(state, call, peer, __FILE__, __LINE__);
    }
    if (std::chrono::steady_clock::now() > deadline) {
      abort_after_timeout(call, peer);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

template <typename Enqueue>
void NcclCommunicator::run(const char* call, int peer, Stream stream, Enqueue&& enqueue) {
  SEQPAR_COMM_CHECK(!broken_ && comm_, nccl_version(), call, rank_, peer,
                    "the communicator is unusable after an earlier timeout or error");
  SEQPAR_CUDA_CHECK(cudaSetDevice(device_), "cudaSetDevice", rank_, peer);
  cudaStream_t caller = as_stream(stream.handle);
  // Data produced on the caller's stream must be complete before the comm stream reads it.
  SEQPAR_CUDA_CHECK(cudaEventRecord(as_event(ready_event_), caller), "cudaEventRecord", rank_, peer);
  SEQPAR_CUDA_CHECK(cudaStreamWaitEvent(as_stream(comm_stream_), as_event(ready_event_), 0),
                    "cudaStreamWaitEvent", rank_, peer);
  enqueue(as_stream(comm_stream_));
  wait_ready(call, peer);  // non-blocking comms may still be enqueuing
  SEQPAR_CUDA_CHECK(cudaEventRecord(as_event(done_event_), as_stream(comm_stream_)),
                    "cudaEventRecord", rank_, peer);
  // The caller's later kernels see the result.
  SEQPAR_CUDA_CHECK(cudaStreamWaitEvent(caller, as_event(done_event_), 0), "cudaStreamWaitEvent",
                    rank_, peer);
  // Host-side deadline: poll the completion event; a kernel stuck on a dead peer never
  // completes, so abort the communicator (which also ends that kernel) and throw.
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  for (;;) {
    cudaError_t q = cudaEventQuery(as_event(done_event_));
    if (q == cudaSuccess) return;
    if (q != cudaErrorNotReady) {
      broken_ = true;
      SEQPAR_COMM_FAIL(CommError, nccl_version(), call, rank_, peer,
                       std::string("cudaEventQuery: ") + cudaGetErrorString(q));
    }
    ncclResult_t state = ncclSuccess;
    ncclCommGetAsyncError(comm_, &state);
    if (state != ncclSuccess && state != ncclInProgress) {
      broken_ = true;
      fail(state, call, peer, __FILE__, __LINE__);
    }
    if (std::chrono::steady_clock::now() > deadline) {
      abort_after_timeout(call, peer);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

void* NcclCommunicator::scratch(std::size_t bytes) {
  if (bytes > scratch_bytes_) {
    if (scratch_) cudaFree(scratch_);
    scratch_ = nullptr;
    SEQPAR_CUDA_CHECK(cudaMalloc(&scratch_, bytes), "cudaMalloc(scratch)", rank_, -1);
    scratch_bytes_ = bytes;
  }
  return scratch_;
}

void NcclCommunicator::send(ConstBuffer buffer, int dst, int tag, Stream stream) {
  send_recv(buffer, dst, MutableBuffer{}, -1, tag, stream);
}

void NcclCommunicator::recv(MutableBuffer buffer, int src, int tag, Stream stream) {
  send_recv(ConstBuffer{}, -1, buffer, src, tag, stream);
}

// NCCL matches point-to-point messages by order per peer, not by tag; callers keep the order.
void NcclCommunicator::send_recv(ConstBuffer send_buffer, int dst, MutableBuffer recv_buffer,
                                 int src, int, Stream stream) {
  const char* call = dst >= 0 && src >= 0 ? "send_recv" : (dst >= 0 ? "send" : "recv");
  const int peer = src >= 0 ? src : dst;
  const bool stage_send = dst >= 0 && send_buffer.memory == MemoryKind::kHost;
  const bool stage_recv = src >= 0 && recv_buffer.memory == MemoryKind::kHost;
  char* staged = stage_send || stage_recv
                     ? static_cast<char*>(scratch(send_buffer.bytes + recv_buffer.bytes))
                     : nullptr;
  run(call, peer, stream, [&](cudaStream_t s) {
    const void* send_ptr = send_buffer.data;
    void* recv_ptr = recv_buffer.data;
    if (stage_send) {
      SEQPAR_CUDA_CHECK(cudaMemcpyAsync(staged, send_buffer.data, send_buffer.bytes,
                                        cudaMemcpyHostToDevice, s),
                        "cudaMemcpyAsync", rank_, dst);
      send_ptr = staged;
    }
    if (stage_recv) recv_ptr = staged + send_buffer.bytes;
    SEQPAR_NCCL_CHECK(ncclGroupStart(), "ncclGroupStart", peer);
    if (dst >= 0)
      SEQPAR_NCCL_CHECK(ncclSend(send_ptr, send_buffer.bytes, ncclUint8, dst, comm_, s), "ncclSend", dst);
    if (src >= 0)
      SEQPAR_NCCL_CHECK(ncclRecv(recv_ptr, recv_buffer.bytes, ncclUint8, src, comm_, s), "ncclRecv", src);
    SEQPAR_NCCL_CHECK(ncclGroupEnd(), "ncclGroupEnd", peer);
    if (stage_recv)
      SEQPAR_CUDA_CHECK(cudaMemcpyAsync(recv_buffer.data, recv_ptr, recv_buffer.bytes,
                                        cudaMemcpyDeviceToHost, s),
                        "cudaMemcpyAsync", rank_, src);
  });
}

void NcclCommunicator::all_gather(ConstBuffer send, MutableBuffer recv, Stream stream) {
  SEQPAR_COMM_CHECK(recv.bytes == send.bytes * static_cast<std::size_t>(size_), nccl_version(),
                    "all_gather", rank_, -1, "recv must hold size() x send.bytes");
  const bool stage = send.memory == MemoryKind::kHost || recv.memory == MemoryKind::kHost;
  char* staged = stage ? static_cast<char*>(scratch(send.bytes + recv.bytes)) : nullptr;
  run("all_gather", -1, stream, [&](cudaStream_t s) {
    const void* in = send.data;
    void* out = recv.data;
    if (stage) {
      SEQPAR_CUDA_CHECK(cudaMemcpyAsync(staged, send.data, send.bytes, cudaMemcpyDefault, s),
                        "cudaMemcpyAsync", rank_, -1);
      in = staged;
      out = staged + send.bytes;
    }
    SEQPAR_NCCL_CHECK(ncclAllGather(in, out, send.bytes, ncclUint8, comm_, s), "ncclAllGather", -1);
    if (stage)
      SEQPAR_CUDA_CHECK(cudaMemcpyAsync(recv.data, out, recv.bytes, cudaMemcpyDefault, s),
                        "cudaMemcpyAsync", rank_, -1);
  });
}

void NcclCommunicator::all_reduce_sum(MutableBuffer buffer, Stream stream) {
  ncclDataType_t type;
  std::size_t scale = 1;
  SEQPAR_COMM_CHECK(sum_type(buffer.dtype, &type, &scale), nccl_version(), "all_reduce_sum",
                    rank_, -1, std::string("no NCCL sum for ") + data_type_name(buffer.dtype));
  const std::size_t count = buffer.bytes / data_type_size(buffer.dtype) * scale;
  const bool stage = buffer.memory == MemoryKind::kHost;
  void* staged = stage ? scratch(buffer.bytes) : nullptr;
  run("all_reduce_sum", -1, stream, [&](cudaStream_t s) {
    void* data = buffer.data;
    if (stage) {
      SEQPAR_CUDA_CHECK(cudaMemcpyAsync(staged, buffer.data, buffer.bytes, cudaMemcpyHostToDevice, s),
                        "cudaMemcpyAsync", rank_, -1);
      data = staged;
    }
    SEQPAR_NCCL_CHECK(ncclAllReduce(data, data, count, type, ncclSum, comm_, s), "ncclAllReduce", -1);
    if (stage)
      SEQPAR_CUDA_CHECK(cudaMemcpyAsync(buffer.data, staged, buffer.bytes, cudaMemcpyDeviceToHost, s),
                        "cudaMemcpyAsync", rank_, -1);
  });
}

void NcclCommunicator::broadcast(MutableBuffer buffer, int root, Stream stream) {
  const bool stage = buffer.memory == MemoryKind::kHost;
  void* staged = stage ? scratch(buffer.bytes) : nullptr;
  run("broadcast", root, stream, [&](cudaStream_t s) {
    void* data = buffer.data;
    if (stage) {
      SEQPAR_CUDA_CHECK(cudaMemcpyAsync(staged, buffer.data, buffer.bytes, cudaMemcpyHostToDevice, s),
                        "cudaMemcpyAsync", rank_, root);
      data = staged;
    }
    SEQPAR_NCCL_CHECK(ncclBroadcast(data, data, buffer.bytes, ncclUint8, root, comm_, s),
                      "ncclBroadcast", root);
    if (stage)
      SEQPAR_CUDA_CHECK(cudaMemcpyAsync(buffer.data, staged, buffer.bytes, cudaMemcpyDeviceToHost, s),
                        "cudaMemcpyAsync", rank_, root);
  });
}

void NcclCommunicator::barrier() {
  int32_t one = 1;
  all_reduce_sum(host_buffer(&one, sizeof(one), DataType::kInt32));
}

std::unique_ptr<Communicator> NcclCommunicator::split(int color, int key) {
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 18, 0)
  SEQPAR_COMM_CHECK(!broken_ && comm_, nccl_version(), "split", rank_, -1,
                    "the communicator is unusable after an earlier timeout or error");
  barrier();  // everybody has arrived before the split
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t sub = nullptr;
  SEQPAR_NCCL_CHECK(ncclCommSplit(comm_, color, key, &sub, &config), "ncclCommSplit", -1);
  wait_ready("ncclCommSplit", -1);
  auto result = std::unique_ptr<NcclCommunicator>(new NcclCommunicator(Adopt{}, sub, device_, timeout_));
  result->wait_ready("ncclCommSplit(child)", -1);
  return result;
#else
  SEQPAR_COMM_FAIL(CommError, nccl_version(), "split", rank_, -1, "needs NCCL >= 2.18");
#endif
}

// ---------------------------------------------------------------------------------------------
// Bootstrap.

bool nccl_devices_available() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

std::unique_ptr<Communicator> make_nccl_world(const LaunchInfo& launch,
                                              const BootstrapOptions& options) {
  const auto timeout = options.timeout.count() > 0 ? options.timeout
                                                   : std::chrono::milliseconds(300000);
  int device = -1;
  if (options.select_device) {
    int count = 0;
    SEQPAR_CUDA_CHECK(cudaGetDeviceCount(&count), "cudaGetDeviceCount", launch.rank, -1);
    device = device_for_local_rank(launch.local_rank, count);
  }
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  if (launch.launcher == Launcher::kTorchrun) {
    // The store on MASTER_ADDR:MASTER_PORT: hosted by torchrun's agent when
    // TORCHELASTIC_USE_AGENT_STORE is set (every rank a client), else by rank 0.
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(launch.master_port);
    opts.isServer = launch.rank == 0 && !launch.agent_store;
    opts.numWorkers = launch.world_size;
    opts.waitWorkers = false;
    opts.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(launch.master_addr, opts);
    c10d::PrefixStore store(options.store_prefix + "/nccl_world", tcp);
    const std::string key = "unique_id";
    if (launch.rank == 0) {
      ncclResult_t rc = ncclGetUniqueId(&id);
      if (rc != ncclSuccess)
        SEQPAR_COMM_FAIL(CommError, nccl_version(), "ncclGetUniqueId", 0, -1, ncclGetErrorString(rc));
      std::vector<uint8_t> bytes(reinterpret_cast<uint8_t*>(&id),
                                 reinterpret_cast<uint8_t*>(&id) + sizeof(id));
      store.set(key, bytes);
    } else {
      std::vector<uint8_t> bytes = store.get(key);  // waits up to the store's timeout
      SEQPAR_COMM_CHECK(bytes.size() == sizeof(id), nccl_version(), "bootstrap", launch.rank, 0,
                        "the store holds a unique id of the wrong size");
      std::memcpy(&id, bytes.data(), sizeof(id));
    }
  } else {
#ifdef SEQPAR_COMM_WITH_MPI
    MpiCommunicator mpi(MPI_COMM_WORLD);
    mpi.set_timeout(timeout);
    if (mpi.rank() == 0) {
      ncclResult_t rc = ncclGetUniqueId(&id);
      if (rc != ncclSuccess)
        SEQPAR_COMM_FAIL(CommError, nccl_version(), "ncclGetUniqueId", 0, -1, ncclGetErrorString(rc));
    }
    mpi.broadcast(host_buffer(&id, sizeof(id), DataType::kUInt8), 0);
#else
    SEQPAR_COMM_CHECK(launch.world_size == 1, nccl_version(), "bootstrap", launch.rank, -1,
                      "an mpirun launch needs seqpar built with MPI to share the NCCL id");
    ncclResult_t rc = ncclGetUniqueId(&id);
    if (rc != ncclSuccess)
      SEQPAR_COMM_FAIL(CommError, nccl_version(), "ncclGetUniqueId", 0, -1, ncclGetErrorString(rc));
#endif
  }
  return std::make_unique<NcclCommunicator>(id, launch.rank, launch.world_size, device, timeout);
}

}  // namespace seqpar::comm
