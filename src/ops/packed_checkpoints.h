// A checkpoint chunk of the packed scan (seqpar::scan with cu_seqlens and checkpoint_every > 0;
// scan_autograd.cpp). Backward recomputes and differentiates each chunk of c steps of the pack
// on its own, with the pieces of the sequences it holds as segments (empty sequences between
// them included). In scan order, the piece that continues a sequence from the chunk before
// starts from the saved state entering the chunk and the others from their sequences' rows of
// h0; the piece that goes on into the next chunk ends with the adjoint carried back from that
// chunk and the others with their rows of grad_h_last. The continuing piece's grad_h0 is carried
// to the chunk before; the others' are their sequences' rows of grad_h0.
#pragma once

#include <ATen/ATen.h>

#include <optional>

#include "ops/packed_sequences.h"

namespace seqpar::ops {

struct PackedChunk {
  PackedRange range;  // the sequences the chunk holds and their local bounds
  at::Tensor cu;      // range.bounds as an int64 host tensor (the local cu_seqlens)
  int64_t enter = -1; // the piece that starts from the saved entering state, or -1
  int64_t leave = -1; // the piece that ends with the carried adjoint, or -1
};

// The chunk [start, end) (start < end) of the pack with bounds cu (sequences + 1 values, host).
PackedChunk packed_chunk(const int64_t* cu, int64_t sequences, int64_t start, int64_t end,
                         bool reverse);

// One row per piece of the chunk: the piece's sequence row of per_sequence (N, ...), or
// zero_row (1, ...) when per_sequence is absent, and `special` (1, ...) for piece `at`
// (zero_row when absent).
at::Tensor piece_rows(const PackedChunk& c, const std::optional<at::Tensor>& per_sequence,
                      int64_t at, const std::optional<at::Tensor>& special,
                      const at::Tensor& zero_row);

// rows (N, ...) with row first + j set to piece_values[j] for every piece j but `skip`.
void scatter_piece_rows(const PackedChunk& c, const at::Tensor& piece_values, int64_t skip,
                        at::Tensor& rows);

}  // namespace seqpar::ops
