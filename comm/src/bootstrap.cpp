// make_world: the world communicator from the launcher's environment (communicator.h).
//
// mpirun: MPI_Init, then MPI (host) or NCCL with the ncclUniqueId sent by MPI_Bcast.
// torchrun: NCCL with the ncclUniqueId shared through c10d's TCPStore (under a PrefixStore);
// with TORCHELASTIC_USE_AGENT_STORE the elastic agent already hosts the store, so every rank
// connects as a client; otherwise rank 0 hosts it.
#include <cstdlib>

#include "error.h"
#include "seqpar/comm/communicator.h"
#include "seqpar/comm/delayed_communicator.h"
#ifdef SEQPAR_COMM_WITH_MPI
#include "seqpar/comm/mpi_communicator.h"
#endif
#ifdef SEQPAR_COMM_WITH_NCCL
#include "nccl_bootstrap.h"
#endif

namespace seqpar::comm {

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
