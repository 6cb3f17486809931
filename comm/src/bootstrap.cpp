// The launcher's environment, make_world (the world communicator from it) and make_grid
// (seqpar/comm/bootstrap.h).
//
// mpirun: MPI_Init, then MPI (host) or NCCL with the ncclUniqueId sent by MPI_Bcast.
// torchrun: NCCL with the ncclUniqueId shared through c10d's TCPStore (under a PrefixStore);
// with TORCHELASTIC_USE_AGENT_STORE the elastic agent already hosts the store, so every rank
// connects as a client; otherwise rank 0 hosts it.
#include "seqpar/comm/bootstrap.h"

#include <cstdlib>
#include <stdexcept>

#include "error.h"
#include "seqpar/comm/delayed_communicator.h"
#ifdef SEQPAR_COMM_WITH_MPI
#include "seqpar/comm/mpi_communicator.h"
#endif
#ifdef SEQPAR_COMM_WITH_NCCL
#include "nccl_bootstrap.h"
#endif

namespace seqpar::comm {

const char* launcher_name(Launcher launcher) {
  switch (launcher) {
    case Launcher::kSingle: return "single";
    case Launcher::kMpirun: return "mpirun";
    case Launcher::kTorchrun: return "torchrun";
  }
  return "unknown";
}

namespace {

bool env_int(const char* name, int* out) {
  const char* v = std::getenv(name);
  if (!v || !*v) return false;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  if (end == v) return false;
  *out = static_cast<int>(x);
  return true;
}

}  // namespace

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


std::unique_ptr<Communicator> make_world(const BootstrapOptions& options) {
  const LaunchInfo launch = detect_launch();
  Backend backend = options.backend;
  if (const char* env = std::getenv("SEQPAR_COMM_BACKEND"); env && backend == Backend::kAuto)
    backend = parse_backend(env);
  if (backend == Backend::kAuto) {
#ifdef SEQPAR_COMM_WITH_NCCL
    if (nccl_devices_available()) backend = Backend::kNccl;
#endif
#ifdef SEQPAR_COMM_WITH_MPI
    if (backend == Backend::kAuto && launch.launcher != Launcher::kTorchrun)
      backend = Backend::kMpi;
#endif
  }
  std::unique_ptr<Communicator> world;
  switch (backend) {
    case Backend::kMpi:
#ifdef SEQPAR_COMM_WITH_MPI
      world = std::make_unique<MpiCommunicator>(MPI_COMM_WORLD);
      break;
#else
      SEQPAR_COMM_FAIL(CommError, "mpi", "make_world", launch.rank, -1,
                       "seqpar was built without MPI (SEQPAR_WITH_MPI)");
#endif
    case Backend::kNccl:
#ifdef SEQPAR_COMM_WITH_NCCL
      world = make_nccl_world(launch, options);
      break;
#else
      SEQPAR_COMM_FAIL(CommError, "nccl", "make_world", launch.rank, -1,
                       "seqpar was built without NCCL (SEQPAR_WITH_NCCL)");
#endif
    case Backend::kC10dGloo:
      // LibTorch wheels ship no gloo headers, so a C++ program cannot construct a gloo
      // ProcessGroup itself. Python programs pass their torch.distributed group instead
      // (communicator_for_group in c10d_communicator.h).
      SEQPAR_COMM_FAIL(CommError, "c10d:gloo", "make_world", launch.rank, -1,
                       "a gloo group is created by torch.distributed in Python; wrap it with "
                       "communicator_for_group(group_name). C++ programs use mpi or nccl");
    case Backend::kAuto:
      SEQPAR_COMM_FAIL(CommError, "auto", "make_world", launch.rank, -1,
                       std::string("no backend available for launcher ") +
                           launcher_name(launch.launcher) +
                           " (build with MPI for CPU runs under mpirun, NCCL for GPUs)");
  }
  if (options.timeout.count() > 0) world->set_timeout(options.timeout);
  return with_injected_delay(std::move(world));
}

}  // namespace seqpar::comm
