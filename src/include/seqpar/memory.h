// Peak memory of this process, for reports that must say what a run needed (the trainer's
// summary, the GPU session's train-smoke step): the host's peak resident set and the peak of
// the memory PyTorch's CUDA caching allocator handed out on one device.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>

namespace seqpar {

// Peak resident set size of the process in bytes since it started (Linux: getrusage's
// ru_maxrss); -1 where the platform does not say.
int64_t peak_host_memory_bytes();

// Peak bytes allocated by PyTorch's CUDA caching allocator on `device` since the process
// started (torch.cuda.max_memory_allocated); -1 for a non-CUDA device or a library built
// without CUDA.
int64_t peak_device_memory_bytes(const c10::Device& device);

}  // namespace seqpar
