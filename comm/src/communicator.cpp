// The backend-independent parts of comm/: data types, errors and the default timeout.
// Backends live in mpi_communicator.cpp, nccl_communicator.cpp and c10d_communicator.cpp;
// launcher detection, make_world and make_grid in bootstrap.cpp.
#include "seqpar/comm/communicator.h"

#include <cstdlib>
#include <sstream>

#include "error.h"

namespace seqpar::comm {

std::size_t data_type_size(DataType dtype) {
  switch (dtype) {
    case DataType::kUInt8: return 1;
    case DataType::kInt32: return 4;
    case DataType::kInt64: return 8;
    case DataType::kFloat32: return 4;
    case DataType::kFloat64: return 8;
    case DataType::kBFloat16: return 2;
    case DataType::kFloat16: return 2;
    case DataType::kComplex64: return 8;
    case DataType::kComplex128: return 16;
  }
  return 1;
}

const char* data_type_name(DataType dtype) {
  switch (dtype) {
    case DataType::kUInt8: return "uint8";
    case DataType::kInt32: return "int32";
    case DataType::kInt64: return "int64";
    case DataType::kFloat32: return "float32";
    case DataType::kFloat64: return "float64";
    case DataType::kBFloat16: return "bfloat16";
    case DataType::kFloat16: return "float16";
    case DataType::kComplex64: return "complex64";
    case DataType::kComplex128: return "complex128";
  }
  return "unknown";
}

static std::string format_error(const std::string& backend, const std::string& call, int rank,
                                int peer, const std::string& detail, const char* file,
                                int line) {
  std::ostringstream os;
  os << "seqpar::comm " << backend << " " << call << " failed on rank " << rank;
  if (peer >= 0) os << " (peer " << peer << ")";
  os << " at " << file << ":" << line << ": " << detail;
  return os.str();
}

CommError::CommError(std::string backend, std::string call, int rank, int peer,
                     std::string detail, const char* file, int line)
    : std::runtime_error(format_error(backend, call, rank, peer, detail, file, line)),
      backend_(std::move(backend)),
      call_(std::move(call)),
      detail_(std::move(detail)),
      rank_(rank),
      peer_(peer) {}

std::chrono::milliseconds Communicator::default_timeout() {
  if (const char* env = std::getenv("SEQPAR_COMM_TIMEOUT_MS")) {
    char* end = nullptr;
    long long ms = std::strtoll(env, &end, 10);
    if (end != env && ms > 0) return std::chrono::milliseconds(ms);
  }
  return std::chrono::milliseconds(300000);
}

void Communicator::pair_exscan(ConstBuffer, MutableBuffer, bool) {
  SEQPAR_COMM_FAIL(CommError, backend_name(), "pair_exscan", rank(), -1,
                   "this communicator offers no exclusive scan of pairs (MPI's only)");
}

}  // namespace seqpar::comm
