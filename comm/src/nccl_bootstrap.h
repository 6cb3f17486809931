// Building the NCCL world communicator from the launcher (used by bootstrap.cpp).
#pragma once

#include <memory>

#include "seqpar/comm/bootstrap.h"

namespace seqpar::comm {

bool nccl_devices_available();
std::unique_ptr<Communicator> make_nccl_world(const LaunchInfo& launch,
                                              const BootstrapOptions& options);

}  // namespace seqpar::comm
