// CUDA scan kernels for complex64 (interleaved re, im): the one explicit instantiation of the forward, backward and
// summary launchers for this element type (one dtype per file keeps each nvcc run short and
// lets the build compile the dtypes in parallel).
#include "scan_launch.cuh"

namespace seqpar::kernels::cuda::detail {
SEQPAR_INSTANTIATE_CUDA_SCAN(float2)
}  // namespace seqpar::kernels::cuda::detail
