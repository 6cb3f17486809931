// Chunked gated DeltaProduct on one device: gated DeltaNet over the Householder sub-steps
// (matrix_state/householder_steps.h).
#include "matrix_state/householder_steps.h"
#include "seqpar/matrix_state.h"

namespace seqpar {

std::tuple<at::Tensor, at::Tensor> chunk_gated_delta_product(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const std::optional<at::Tensor>& g,
    const at::Tensor& beta, int64_t num_householder, std::optional<double> scale,
    const std::optional<at::Tensor>& initial_state, int64_t chunk_size,
    const std::optional<at::Tensor>& cu_seqlens) {
  const auto steps = matrix_state::householder_steps("seqpar.chunk_gated_delta_product", q, k, v,
                                                     g.value_or(at::Tensor()), beta,
                                                     num_householder, cu_seqlens);
  auto [o, final_state] = chunk_gated_delta_rule(steps.q, k, v, steps.g, beta, scale,
                                                 initial_state, chunk_size, steps.cu_seqlens);
  return {matrix_state::token_outputs(o, num_householder), final_state};
}

}  // namespace seqpar
