// See chunk_prefix_maps.h.
#include "matrix_state/chunk_prefix_maps.h"

#include <cmath>
#include <vector>

namespace seqpar::matrix_state {
namespace {

// One level: maps Ms[i], Es[i] applied in order, starting from the identity map shaped like
// Ms[0] / Es[0]. Returns the maps entering each step stacked along `dim`, and the total.
ChunkMaps affine_chain(const std::vector<at::Tensor>& Ms, const std::vector<at::Tensor>& Es,
                       int64_t dim) {
  const int64_t K = Ms[0].size(-1);
  at::Tensor P = at::eye(K, Ms[0].options()).expand(Ms[0].sizes()), Z = at::zeros_like(Es[0]);
  std::vector<at::Tensor> P_in, Z_in;
  for (size_t i = 0; i < Ms.size(); ++i) {
    P_in.push_back(P);
    Z_in.push_back(Z);
    P = at::matmul(Ms[i], P);
    Z = at::matmul(Ms[i], Z) + Es[i];
  }
  return {at::stack(P_in, dim), at::stack(Z_in, dim), P, Z};
}

}  // namespace

ChunkMaps chunk_prefix_maps(const at::Tensor& M, const at::Tensor& E, bool with_P) {
  const int64_t B = M.size(0), H = M.size(1), N = M.size(2), K = M.size(3), V = E.size(4);
  const int64_t L = static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(N))));
  const int64_t G = (N + L - 1) / L, pad = G * L - N;
  at::Tensor Mp = M, Ep = E;
  if (pad > 0) {
    Mp = at::cat({M, at::eye(K, M.options()).expand({B, H, pad, K, K})}, 2);
    Ep = at::cat({E, at::zeros({B, H, pad, K, V}, E.options())}, 2);
  }
  // Inside the groups, side by side: (B, H, G, ...) per step. unbind, not select: the backward
  // of many selects would allocate a full-size gradient each; unbind's stacks once.
  const ChunkMaps local = affine_chain(Mp.reshape({B, H, G, L, K, K}).unbind(3),
                                       Ep.reshape({B, H, G, L, K, V}).unbind(3), 3);
  // The groups in order: the map entering each group, (B, H, G, 1, ...).
  const ChunkMaps group = affine_chain(local.M_total.unbind(2), local.E_total.unbind(2), 2);
  const at::Tensor group_P = group.P.unsqueeze(3), group_Z = group.Z.unsqueeze(3);
  ChunkMaps maps;
  if (with_P) maps.P = at::matmul(local.P, group_P).view({B, H, G * L, K, K}).narrow(2, 0, N);
  maps.Z = (at::matmul(local.P, group_Z) + local.Z).view({B, H, G * L, K, V}).narrow(2, 0, N);
  maps.M_total = group.M_total;
  maps.E_total = group.E_total;
  return maps;
}

}  // namespace seqpar::matrix_state
