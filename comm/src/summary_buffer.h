// Summaries travel as one flat buffer: their parts flattened and concatenated in order.
#pragma once

#include <ATen/ATen.h>

#include <vector>

namespace seqpar::comm::detail {

inline at::Tensor pack(const std::vector<at::Tensor>& parts) {
  std::vector<at::Tensor> flat;
  for (const at::Tensor& t : parts) flat.push_back(t.reshape({-1}));
  return at::cat(flat).contiguous();
}

inline int64_t packed_numel(const std::vector<at::Tensor>& parts) {
  int64_t n = 0;
  for (const at::Tensor& t : parts) n += t.numel();
  return n;
}

// Views of `flat` shaped like the parts of `like`.
inline std::vector<at::Tensor> unpack(const at::Tensor& flat, const std::vector<at::Tensor>& like) {
  std::vector<at::Tensor> out;
  int64_t offset = 0;
  for (const at::Tensor& t : like) {
    out.push_back(flat.narrow(0, offset, t.numel()).view(t.sizes()));
    offset += t.numel();
  }
  return out;
}

}  // namespace seqpar::comm::detail
