// Building communicators from the launcher's environment (mpirun or torchrun): which launcher
// started this process, which backend to use, the world communicator and its dp x sp grid.
// Apart from communicator.h so that code that only moves data never sees launch policy.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "seqpar/comm/communicator.h"

namespace seqpar::comm {

enum class Launcher : int { kSingle, kMpirun, kTorchrun };
const char* launcher_name(Launcher launcher);

// What the launcher's environment says about this process.
//   mpirun (Open MPI): OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK / _LOCAL_SIZE.
//   torchrun: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT,
//             TORCHELASTIC_USE_AGENT_STORE (the agent hosts the store: every rank is a client).
struct LaunchInfo {
  Launcher launcher = Launcher::kSingle;
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr;  // torchrun only
  int master_port = 0;      // torchrun only
  bool agent_store = false; // torchrun with TORCHELASTIC_USE_AGENT_STORE=True
};
LaunchInfo detect_launch();

enum class Backend : int {
  kAuto,      // NCCL when built and CUDA devices exist, else MPI under mpirun, else c10d gloo
  kMpi,
  kNccl,
  kC10dGloo,  // a gloo ProcessGroup built over a TCPStore (torchrun) or an MPI-shared address
};
const char* backend_name(Backend backend);
Backend parse_backend(const std::string& name);  // "auto", "mpi", "nccl", "gloo"

struct BootstrapOptions {
  Backend backend = Backend::kAuto;
  std::chrono::milliseconds timeout{0};  // 0: Communicator's default
  // NCCL: select cudaSetDevice(local_rank % device_count) before creating the communicator.
  bool select_device = true;
  // Prefix under which the NCCL unique id / gloo rendezvous keys live in the TCPStore.
  std::string store_prefix = "seqpar";
};

// The world communicator of this process, from the launcher's environment.
std::unique_ptr<Communicator> make_world(const BootstrapOptions& options = {});

// The world split into dp x sp groups: sp_size consecutive ranks form one sequence-parallel
// group; ranks with the same position inside their sp group form one data-parallel group.
// world size must be a multiple of sp_size.
struct Grid {
  std::shared_ptr<Communicator> world, sp, dp;
  int sp_size = 1, dp_size = 1;
  int sp_rank = 0, dp_rank = 0;
};
Grid make_grid(std::shared_ptr<Communicator> world, int sp_size);

// Which CUDA device this process should use: local_rank modulo the visible device count.
int device_for_local_rank(int local_rank, int device_count);

}  // namespace seqpar::comm
