// MPI backend: non-blocking MPI calls polled against a deadline (see mpi_communicator.h).
#include "seqpar/comm/mpi_communicator.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

#include "error.h"
#include "staging.h"

namespace seqpar::comm {
namespace {

bool g_we_initialized = false;
bool g_any_timeout = false;

// Requests and buffers of operations abandoned by a timeout. They may still complete, so they
// live until the process exits.
struct Parked {
  std::vector<MPI_Request> requests;
  std::vector<std::vector<char>> staging;
};
std::mutex g_parked_mutex;
std::vector<Parked>* g_parked = new std::vector<Parked>();  // never freed on purpose

void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  // After a timeout a peer is gone or stuck: MPI_Finalize could wait for it forever.
  if (!finalized && !g_any_timeout) MPI_Finalize();
}

MPI_Datatype sum_type(DataType dtype) {
  switch (dtype) {
    case DataType::kUInt8: return MPI_UINT8_T;
    case DataType::kInt32: return MPI_INT32_T;
    case DataType::kInt64: return MPI_INT64_T;
    case DataType::kFloat32: return MPI_FLOAT;
    case DataType::kFloat64: return MPI_DOUBLE;
    case DataType::kComplex64: return MPI_C_FLOAT_COMPLEX;
    case DataType::kComplex128: return MPI_C_DOUBLE_COMPLEX;
    default: return MPI_DATATYPE_NULL;
  }
}

// MPI counts are int: large messages go as a contiguous type of 1 MiB blocks plus a remainder
// would be needed beyond 2 GiB; the summaries are far below that, so we check and refuse.
int to_count(std::size_t bytes, const MpiCommunicator& c, const char* call) {
  SEQPAR_COMM_CHECK(bytes <= static_cast<std::size_t>(INT32_MAX), "mpi", call, c.rank(), -1,
                    "message of " + std::to_string(bytes) + " bytes exceeds MPI's int count");
  return static_cast<int>(bytes);
}

}  // namespace

void ensure_mpi_initialized() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) return;
  int provided = 0;
  // SERIALIZED: calls may come from different threads (autograd's backward thread), never
  // at the same time.
  int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
  if (rc != MPI_SUCCESS)
    throw CommError("mpi", "MPI_Init_thread", -1, -1, "returned " + std::to_string(rc),
                    __FILE__, __LINE__);
  g_we_initialized = true;
  std::atexit(finalize_at_exit);
}

std::string MpiCommunicator::library_version() {
  char version[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(version, &len);
  std::string v(version, static_cast<std::size_t>(len));
  auto cut = v.find_first_of(",\n");
  return cut == std::string::npos ? v : v.substr(0, cut);
}

void MpiCommunicator::check(int rc, const char* call, int peer, const char* file,
                            int line) const {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw CommError("mpi (" + library_version() + ")", call, rank_, peer,
                  std::string(msg, static_cast<std::size_t>(len)), file, line);
}
#define SEQPAR_MPI_CHECK(expr, call, peer) check((expr), (call), (peer), __FILE__, __LINE__)

void MpiCommunicator::check_usable(const char* call, int peer) const {
  SEQPAR_COMM_CHECK(!broken_, "mpi", call, rank_, peer,
                    "the communicator is unusable after an earlier timeout");
  SEQPAR_COMM_CHECK(comm_ != MPI_COMM_NULL, "mpi", call, rank_, peer,
                    "the communicator was moved from");
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm) {
  ensure_mpi_initialized();
  MPI_Comm dup = MPI_COMM_NULL;
  check(MPI_Comm_dup(comm, &dup), "MPI_Comm_dup", -1, __FILE__, __LINE__);
  comm_ = dup;
  // Errors come back as return codes so that we can throw them with context.
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

void MpiCommunicator::release() noexcept {
  int finalized = 0;
  MPI_Finalized(&finalized);
  // A communicator with abandoned operations is not freed: MPI_Comm_free would be erroneous.
  if (!finalized && !broken_) {
    if (reversed_ != MPI_COMM_NULL) MPI_Comm_free(&reversed_);
    if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }
  comm_ = reversed_ = MPI_COMM_NULL;
}

MpiCommunicator::~MpiCommunicator() { release(); }

MpiCommunicator::MpiCommunicator(MpiCommunicator&& other) noexcept
    : comm_(other.comm_), reversed_(other.reversed_), rank_(other.rank_), size_(other.size_),
      broken_(other.broken_) {
  timeout_ = other.timeout_;
  other.comm_ = other.reversed_ = MPI_COMM_NULL;
}

MpiCommunicator& MpiCommunicator::operator=(MpiCommunicator&& other) noexcept {
  if (this != &other) {
    release();
    comm_ = other.comm_;
    reversed_ = other.reversed_;
    rank_ = other.rank_;
    size_ = other.size_;
    broken_ = other.broken_;
    timeout_ = other.timeout_;
    other.comm_ = other.reversed_ = MPI_COMM_NULL;
  }
  return *this;
}

MPI_Comm MpiCommunicator::reversed_mpi_comm() {
  if (reversed_ == MPI_COMM_NULL) {
    check_usable("MPI_Comm_split(reverse)", -1);
    // Everybody must be here before a blocking MPI_Comm_split.
    barrier();
    SEQPAR_MPI_CHECK(MPI_Comm_split(comm_, 0, size_ - 1 - rank_, &reversed_),
                     "MPI_Comm_split(reverse)", -1);
    MPI_Comm_set_errhandler(reversed_, MPI_ERRORS_RETURN);
  }
  return reversed_;
}

void MpiCommunicator::wait_all(std::vector<MPI_Request>& requests,
                               std::vector<std::vector<char>>& staging, const char* call,
                               int peer) {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + timeout_;
  int spins = 0;
  for (;;) {
    int done = 0;
    SEQPAR_MPI_CHECK(MPI_Testall(static_cast<int>(requests.size()), requests.data(), &done,
                                 MPI_STATUSES_IGNORE),
                     call, peer);
    if (done) return;
    if (clock::now() > deadline) {
      broken_ = true;
      g_any_timeout = true;
      {
        std::lock_guard<std::mutex> lock(g_parked_mutex);
        g_parked->push_back({std::move(requests), std::move(staging)});
      }
      SEQPAR_COMM_FAIL(CommTimeoutError, "mpi (" + library_version() + ")", call, rank_, peer,
                       "not complete after " + std::to_string(timeout_.count()) +
                           " ms: a peer died, hangs, or never made the matching call");
    }
    // Spin briefly for latency, then back off so that oversubscribed ranks on few cores
    // let the peer they wait for run.
    if (++spins < 64) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(std::min(1000, 10 * (spins - 63))));
    }
  }
}

void MpiCommunicator::send(ConstBuffer buffer, int dst, int tag, Stream stream) {
  send_recv(buffer, dst, MutableBuffer{}, -1, tag, stream);
}

void MpiCommunicator::recv(MutableBuffer buffer, int src, int tag, Stream stream) {
  send_recv(ConstBuffer{}, -1, buffer, src, tag, stream);
}

void MpiCommunicator::send_recv(ConstBuffer send_buffer, int dst, MutableBuffer recv_buffer,
                                int src, int tag, Stream stream) {
  const char* call = dst >= 0 && src >= 0 ? "send_recv" : (dst >= 0 ? "send" : "recv");
  const int peer = src >= 0 ? src : dst;
  check_usable(call, peer);
  SEQPAR_COMM_CHECK(dst < size_ && src < size_, "mpi", call, rank_, peer,
                    "peer out of range for a group of size " + std::to_string(size_));
  std::vector<std::vector<char>> staging(2);
  std::vector<MPI_Request> requests;
  if (src >= 0) {
    staging[1].resize(recv_buffer.bytes);
    requests.emplace_back();
    SEQPAR_MPI_CHECK(MPI_Irecv(staging[1].data(), to_count(recv_buffer.bytes, *this, call),
                               MPI_BYTE, src, tag, comm_, &requests.back()),
                     "MPI_Irecv", src);
  }
  if (dst >= 0) {
    staging[0].resize(send_buffer.bytes);
    auto err = detail::copy_to_host(send_buffer, staging[0].data(), stream);
    SEQPAR_COMM_CHECK(err.empty(), "mpi", call, rank_, dst, err);
    requests.emplace_back();
    SEQPAR_MPI_CHECK(MPI_Isend(staging[0].data(), to_count(send_buffer.bytes, *this, call),
                               MPI_BYTE, dst, tag, comm_, &requests.back()),
                     "MPI_Isend", dst);
  }
  if (requests.empty()) return;
  // Sizes must match: MPI reports a truncation as an error on the receive.
  wait_all(requests, staging, call, peer);
  if (src >= 0) {
    auto err = detail::copy_from_host(staging[1].data(), recv_buffer, stream);
    SEQPAR_COMM_CHECK(err.empty(), "mpi", call, rank_, src, err);
  }
}

void MpiCommunicator::all_gather(ConstBuffer send, MutableBuffer recv, Stream stream) {
  check_usable("all_gather", -1);
  SEQPAR_COMM_CHECK(recv.bytes == send.bytes * static_cast<std::size_t>(size_), "mpi",
                    "all_gather", rank_, -1,
                    "recv holds " + std::to_string(recv.bytes) + " bytes, expected size() x " +
                        std::to_string(send.bytes));
  std::vector<std::vector<char>> staging(2);
  staging[0].resize(send.bytes);
  staging[1].resize(recv.bytes);
  auto err = detail::copy_to_host(send, staging[0].data(), stream);
  SEQPAR_COMM_CHECK(err.empty(), "mpi", "all_gather", rank_, -1, err);
  std::vector<MPI_Request> requests(1);
  const int count = to_count(send.bytes, *this, "all_gather");
  SEQPAR_MPI_CHECK(MPI_Iallgather(staging[0].data(), count, MPI_BYTE, staging[1].data(), count,
                                  MPI_BYTE, comm_, &requests[0]),
                   "MPI_Iallgather", -1);
  wait_all(requests, staging, "all_gather", -1);
  err = detail::copy_from_host(staging[1].data(), recv, stream);
  SEQPAR_COMM_CHECK(err.empty(), "mpi", "all_gather", rank_, -1, err);
}

void MpiCommunicator::all_reduce_sum(MutableBuffer buffer, Stream stream) {
  check_usable("all_reduce_sum", -1);
  MPI_Datatype type = sum_type(buffer.dtype);
  SEQPAR_COMM_CHECK(type != MPI_DATATYPE_NULL, "mpi", "all_reduce_sum", rank_, -1,
                    std::string("no MPI sum for dtype ") + data_type_name(buffer.dtype));
  std::vector<std::vector<char>> staging(2);
  staging[0].resize(buffer.bytes);
  staging[1].resize(buffer.bytes);
  auto err = detail::copy_to_host(buffer, staging[0].data(), stream);
  SEQPAR_COMM_CHECK(err.empty(), "mpi", "all_reduce_sum", rank_, -1, err);
  std::vector<MPI_Request> requests(1);
  const int count = static_cast<int>(buffer.bytes / data_type_size(buffer.dtype));
  SEQPAR_MPI_CHECK(MPI_Iallreduce(staging[0].data(), staging[1].data(), count, type, MPI_SUM,
                                  comm_, &requests[0]),
                   "MPI_Iallreduce", -1);
  wait_all(requests, staging, "all_reduce_sum", -1);
  err = detail::copy_from_host(staging[1].data(), buffer, stream);
  SEQPAR_COMM_CHECK(err.empty(), "mpi", "all_reduce_sum", rank_, -1, err);
}

void MpiCommunicator::broadcast(MutableBuffer buffer, int root, Stream stream) {
  check_usable("broadcast", root);
  SEQPAR_COMM_CHECK(root >= 0 && root < size_, "mpi", "broadcast", rank_, root,
                    "root out of range");
  std::vector<std::vector<char>> staging(1);
  staging[0].resize(buffer.bytes);
  if (rank_ == root) {
    auto err = detail::copy_to_host(buffer, staging[0].data(), stream);
    SEQPAR_COMM_CHECK(err.empty(), "mpi", "broadcast", rank_, root, err);
  }
  std::vector<MPI_Request> requests(1);
  SEQPAR_MPI_CHECK(MPI_Ibcast(staging[0].data(), to_count(buffer.bytes, *this, "broadcast"),
                              MPI_BYTE, root, comm_, &requests[0]),
                   "MPI_Ibcast", root);
  wait_all(requests, staging, "broadcast", root);
  if (rank_ != root) {
    auto err = detail::copy_from_host(staging[0].data(), buffer, stream);
    SEQPAR_COMM_CHECK(err.empty(), "mpi", "broadcast", rank_, root, err);
  }
}

void MpiCommunicator::barrier() {
  check_usable("barrier", -1);
  std::vector<std::vector<char>> staging;
  std::vector<MPI_Request> requests(1);
  SEQPAR_MPI_CHECK(MPI_Ibarrier(comm_, &requests[0]), "MPI_Ibarrier", -1);
  wait_all(requests, staging, "barrier", -1);
}

std::unique_ptr<Communicator> MpiCommunicator::split(int color, int key) {
  check_usable("split", -1);
  // MPI_Comm_split blocks without a deadline: make sure everybody has arrived first.
  barrier();
  MPI_Comm sub = MPI_COMM_NULL;
  SEQPAR_MPI_CHECK(MPI_Comm_split(comm_, color, key, &sub), "MPI_Comm_split", -1);
  auto result = std::make_unique<MpiCommunicator>(sub);
  MPI_Comm_free(&sub);
  result->set_timeout(timeout_);
  return result;
}

}  // namespace seqpar::comm
