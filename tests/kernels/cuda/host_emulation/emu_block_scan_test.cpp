// Runs the CUDA kernels of the 2x2 block scan (kernels/cuda/block_scan.cu: forward, backward,
// summary, through the entry points of cuda_block_scan.h and the fixed-chunk ones of
// block_scan_chunks.h) on the host emulator (emu_cuda.h) and compares every output with the
// float64 sequential reference of tests/kernels/cuda/block_scan_check.h: T = 0, 1, odd T,
// many chunks, C = 1 and 64, reversed time, time-major and channel-major strides, optional
// operands absent and present, lower_triangular, decays near 0 and near 1 (oscillators),
// float32 / float64 / bfloat16 / float16. Prints "ok ..." / "FAIL ..." lines; exit status 1
// on any failure. Used by scripts/cuda_build_check.sh:
//   g++ -std=c++17 -O2 -I<cuda>/include -I<cuda>/include/cccl -Ikernels/cuda
//       -Itests/kernels/cuda/host_emulation -Itests/kernels/cuda -Ikernels/include
//       emu_block_scan_test.cpp && ./a.out [full]
// The GPU session runs the same cases on a device (tests/kernels/cuda/gpu_check/block_scan_gpu_check.cu).
#include "emu_cuda.h"
#include "block_scan.cu"

#include <cstdlib>
#include <cstring>

#include "block_scan_check.h"

// Memory of the emulated device is host memory; kernels run when launched.
namespace block_check {
void* device_alloc(size_t bytes) { return std::malloc(bytes); }
void device_free(void* p) { std::free(p); }
void copy_to_device(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void copy_to_host(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void* test_stream() { return nullptr; }
int finish(void*) { return 0; }
}  // namespace block_check

// `full` adds the GPU check's device-sized shapes (slow here: minutes).
int main(int argc, char** argv) {
  const bool full = argc > 1 && std::strcmp(argv[1], "full") == 0;
  const long mallocs_before = emu::mallocs.load();
  const int rc = block_check::run_all(/*large=*/full);
  std::printf("emulated scratch allocations: %ld\n", emu::mallocs.load() - mallocs_before);
  return rc;
}
