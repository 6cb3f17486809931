// See seqpar/memory.h.
#include "seqpar/memory.h"

#include <sys/resource.h>

#if defined(SEQPAR_WITH_CUDA)
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace seqpar {

int64_t peak_host_memory_bytes() {
#if defined(__linux__)
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return -1;
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // KiB on Linux
#else
  return -1;
#endif
}

int64_t peak_device_memory_bytes(const c10::Device& device) {
#if defined(SEQPAR_WITH_CUDA)
  if (!device.is_cuda()) return -1;
  const auto index = device.has_index() ? device.index() : c10::DeviceIndex(0);
  // Index 0 of the stat arrays is the aggregate over pool kinds (StatType::AGGREGATE, whose
  // enclosing namespace moved between PyTorch releases).
  return c10::cuda::CUDACachingAllocator::getDeviceStats(index).allocated_bytes[0].peak;
#else
  (void)device;
  return -1;
#endif
}

}  // namespace seqpar
