// See packed_checkpoints.h.
#include "ops/packed_checkpoints.h"

#include <vector>

namespace seqpar::ops {

PackedChunk packed_chunk(const int64_t* cu, int64_t sequences, int64_t start, int64_t end,
                         bool reverse) {
  PackedChunk c;
  c.range = packed_range(cu, sequences, start, end);
  c.cu = at::tensor(c.range.bounds, at::TensorOptions().dtype(at::kLong));
  const int64_t last = c.range.count - 1;
  // Forward scans enter a chunk at its first step, reverse ones at its last.
  const bool enters = reverse ? c.range.ends_after : c.range.begins_before;
  const bool leaves = reverse ? c.range.begins_before : c.range.ends_after;
  if (enters) c.enter = reverse ? last : 0;
  if (leaves) c.leave = reverse ? 0 : last;
  return c;
}

at::Tensor piece_rows(const PackedChunk& c, const std::optional<at::Tensor>& per_sequence,
                      int64_t at, const std::optional<at::Tensor>& special,
                      const at::Tensor& zero_row) {
  std::vector<at::Tensor> rows;
  for (int64_t j = 0; j < c.range.count; ++j) {
    if (j == at) {
      rows.push_back(special ? *special : zero_row);
    } else {
      rows.push_back(per_sequence ? per_sequence->narrow(0, c.range.first + j, 1) : zero_row);
    }
  }
  return at::cat(rows, 0);
}

void scatter_piece_rows(const PackedChunk& c, const at::Tensor& piece_values, int64_t skip,
                        at::Tensor& rows) {
  for (int64_t j = 0; j < c.range.count; ++j)
    if (j != skip) rows.narrow(0, c.range.first + j, 1).copy_(piece_values.narrow(0, j, 1));
}

}  // namespace seqpar::ops
