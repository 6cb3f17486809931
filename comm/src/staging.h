// Copies between a (host or device) buffer and host staging memory. Device copies need a CUDA
// build of comm/ (SEQPAR_COMM_WITH_CUDA); they run on the caller's stream, and the host waits
// for that stream only (never a device-wide sync).
#pragma once

#include <cstring>
#include <string>
#include <vector>

#include "seqpar/comm/communicator.h"

namespace seqpar::comm::detail {

// Returns an empty string on success, else what went wrong.
std::string copy_to_host(ConstBuffer src, void* dst, Stream stream);
std::string copy_from_host(const void* src, MutableBuffer dst, Stream stream);

}  // namespace seqpar::comm::detail
