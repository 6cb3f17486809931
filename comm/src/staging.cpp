// Host staging for backends that move host memory (MPI, and c10d when the data is on the host).
#include "staging.h"

#ifdef SEQPAR_COMM_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace seqpar::comm::detail {

std::string copy_to_host(ConstBuffer src, void* dst, Stream stream) {
  if (src.bytes == 0) return {};
  if (src.memory == MemoryKind::kHost) {
    std::memcpy(dst, src.data, src.bytes);
    return {};
  }
#ifdef SEQPAR_COMM_WITH_CUDA
  auto s = static_cast<cudaStream_t>(stream.handle);
  cudaError_t err = cudaMemcpyAsync(dst, src.data, src.bytes, cudaMemcpyDeviceToHost, s);
  if (err == cudaSuccess) err = cudaStreamSynchronize(s);
  if (err != cudaSuccess) return std::string("cudaMemcpyAsync D2H: ") + cudaGetErrorString(err);
  return {};
#else
  (void)stream;
  return "a device buffer was passed but comm/ was built without CUDA";
#endif
}

std::string copy_from_host(const void* src, MutableBuffer dst, Stream stream) {
  if (dst.bytes == 0) return {};
  if (dst.memory == MemoryKind::kHost) {
    std::memcpy(dst.data, src, dst.bytes);
    return {};
  }
#ifdef SEQPAR_COMM_WITH_CUDA
  auto s = static_cast<cudaStream_t>(stream.handle);
  cudaError_t err = cudaMemcpyAsync(dst.data, src, dst.bytes, cudaMemcpyHostToDevice, s);
  // The staging memory is pageable and may be reused when we return: wait for the copy.
  if (err == cudaSuccess) err = cudaStreamSynchronize(s);
  if (err != cudaSuccess) return std::string("cudaMemcpyAsync H2D: ") + cudaGetErrorString(err);
  return {};
#else
  (void)stream;
  return "a device buffer was passed but comm/ was built without CUDA";
#endif
}

}  // namespace seqpar::comm::detail
