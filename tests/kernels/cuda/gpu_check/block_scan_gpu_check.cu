// Torch-free check of the CUDA 2x2 block scan on a real GPU: the host-emulation test's cases
// (tests/kernels/cuda/block_scan_check.h) plus three device-sized shapes (one sequence of 2^20
// steps in 1024 chunks; 1024 sequences of 4096 steps in 64 chunks; 2^16 sequences of one
// chunk each), through the public entry points (cuda_block_scan.h) and the fixed-chunk ones,
// with device memory and a non-blocking stream.
// Linked against the block scan's object alone; built and run by scripts/gpu_session.sh
// (step block-check):
//   nvcc -std=c++17 -O3 -Ikernels/include -Ikernels/cuda -Itests/kernels/cuda
//     tests/kernels/cuda/gpu_check/block_scan_gpu_check.cu kernels/cuda/block_scan.cu
//   block_scan_gpu_check [quick|full]     # quick: the emulator's cases only
// Prints "ok ..." / "FAIL ..." lines; exit status 1 on any failure, 2 on a CUDA error.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "block_scan_check.h"

namespace {
void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "CUDA error %s in %s: %s\n", cudaGetErrorName(e), what, cudaGetErrorString(e));
    std::exit(2);
  }
}
cudaStream_t g_stream = nullptr;
}  // namespace

namespace block_check {
void* device_alloc(size_t bytes) {
  void* p = nullptr;
  check_cuda(cudaMalloc(&p, bytes), "cudaMalloc");
  return p;
}
void device_free(void* p) { check_cuda(cudaFree(p), "cudaFree"); }
// cudaMemcpy from pageable memory may return before the data has landed, and the kernels run
// on a non-blocking stream: wait for the device.
void copy_to_device(void* dst, const void* src, size_t bytes) {
  check_cuda(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy to device");
  check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
}
void copy_to_host(void* dst, const void* src, size_t bytes) {
  check_cuda(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy to host");
}
void* test_stream() { return g_stream; }
int finish(void* stream) {
  const cudaError_t e = cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
  return e == cudaSuccess ? int(cudaGetLastError()) : int(e);
}
}  // namespace block_check

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "quick";
  cudaDeviceProp prop{};
  check_cuda(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  std::printf("device: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
  // A non-default stream, so that a kernel launched on the legacy stream by mistake would not
  // be ordered before the copies back.
  check_cuda(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking), "cudaStreamCreate");
  const int rc = block_check::run_all(/*large=*/!quick);
  check_cuda(cudaStreamDestroy(g_stream), "cudaStreamDestroy");
  return rc;
}
