// How the CUDA block scan cuts time into chunks, and entry points that take the chunk length
// as given, so that tests (tests/kernels/cuda) can run lengths the rule would not pick
// (1 step, a single chunk, chunks that do not divide T) through the same kernels.
//
// The rule (chunk_length): with N = batch * channels sequences, aim for about 2^16 threads in
// the per-chunk phases (enough to cover a GPU's latency), i.e. K = ceil(2^16 / N) chunks per
// sequence, but never more than ceil(sqrt(T)): the in-order pass over the chunk maps is K
// dependent steps per sequence and the per-chunk passes are L = ceil(T / K) dependent steps
// per thread, so a few long sequences get L ~ K ~ sqrt(T) instead of one very long pass.
// N >= 2^16 gives one chunk per sequence: one pass, no scratch.
#pragma once

#include <cstdint>

#include "seqpar/kernels/block_scan_params.h"

namespace seqpar::kernels::cuda::block {

int64_t chunk_length(int64_t sequences, int64_t time);

// As the public entry points (cuda_block_scan.h) with chunks of `chunk` steps (>= 1).
int forward_chunked(const BlockScanForwardParams& p, void* stream, int64_t chunk);
int backward_chunked(const BlockScanBackwardParams& p, void* stream, int64_t chunk);
int summary_chunked(const BlockScanSummaryParams& p, void* stream, int64_t chunk);

}  // namespace seqpar::kernels::cuda::block
