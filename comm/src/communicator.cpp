// The backend-independent parts of comm/: data types, errors, the default timeout and the
// launcher detection. Backends live in mpi_communicator.cpp, nccl_communicator.cpp and
// c10d_communicator.cpp; make_world in bootstrap.cpp.
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

const char* launcher_name(Launcher launcher) {
  switch (launcher) {
    case Launcher::kSingle: return "single";
    case Launcher::kMpirun: return "mpirun";
    case Launcher::kTorchrun: return "torchrun";
  }
  return "unknown";
}

static bool env_int(const char* name, int* out) {
  const char* v = std::getenv(name);
  if (!v || !*v) return false;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  if (end == v) return false;
  *out = static_cast<int>(x);
  return true;
}

LaunchInfo detect_launch() {
  LaunchInfo info;
  // torchrun is checked first: a torchrun job started inside an mpirun allocation sets both.
  if (env_int("RANK", &info.rank) && env_int("WORLD_SIZE", &info.world_size)) {
    info.launcher = Launcher::kTorchrun;
    if (!env_int("LOCAL_RANK", &info.local_rank)) info.local_rank = info.rank;
    if (!env_int("LOCAL_WORLD_SIZE", &info.local_world_size))
      info.local_world_size = info.world_size;
    const char* addr = std::getenv("MASTER_ADDR");
    info.master_addr = addr ? addr : "127.0.0.1";
    if (!env_int("MASTER_PORT", &info.master_port)) info.master_port = 29500;
    const char* agent = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
    info.agent_store = agent && (std::string(agent) == "True" || std::string(agent) == "1" ||
                                 std::string(agent) == "true");
    return info;
  }
  if (env_int("OMPI_COMM_WORLD_RANK", &info.rank) &&
      env_int("OMPI_COMM_WORLD_SIZE", &info.world_size)) {
    info.launcher = Launcher::kMpirun;
    if (!env_int("OMPI_COMM_WORLD_LOCAL_RANK", &info.local_rank)) info.local_rank = info.rank;
    if (!env_int("OMPI_COMM_WORLD_LOCAL_SIZE", &info.local_world_size))
      info.local_world_size = info.world_size;
    return info;
  }
  return info;
}

const char* backend_name(Backend backend) {
  switch (backend) {
    case Backend::kAuto: return "auto";
    case Backend::kMpi: return "mpi";
    case Backend::kNccl: return "nccl";
    case Backend::kC10dGloo: return "gloo";
  }
  return "unknown";
}

Backend parse_backend(const std::string& name) {
  if (name == "auto") return Backend::kAuto;
  if (name == "mpi") return Backend::kMpi;
  if (name == "nccl") return Backend::kNccl;
  if (name == "gloo" || name == "c10d" || name == "c10d:gloo") return Backend::kC10dGloo;
  throw std::invalid_argument("seqpar::comm: unknown backend '" + name +
                              "' (expected auto, mpi, nccl or gloo)");
}

int device_for_local_rank(int local_rank, int device_count) {
  if (device_count <= 0) return -1;
  return local_rank % device_count;
}

Grid make_grid(std::shared_ptr<Communicator> world, int sp_size) {
  const int size = world->size(), rank = world->rank();
  SEQPAR_COMM_CHECK(sp_size >= 1 && size % sp_size == 0, world->backend_name(), "make_grid",
                    rank, -1,
                    "world size " + std::to_string(size) + " is not a multiple of sp_size " +
                        std::to_string(sp_size));
  Grid grid;
  grid.sp_size = sp_size;
  grid.dp_size = size / sp_size;
  grid.sp_rank = rank % sp_size;
  grid.dp_rank = rank / sp_size;
  // Consecutive ranks share an sp group: the sequence slices of one sample stay on
  // neighbouring ranks (usually one node, the fastest links).
  grid.sp = world->split(/*color=*/grid.dp_rank, /*key=*/grid.sp_rank);
  grid.dp = world->split(/*color=*/grid.sp_rank, /*key=*/grid.dp_rank);
  grid.world = std::move(world);
  return grid;
}

}  // namespace seqpar::comm
