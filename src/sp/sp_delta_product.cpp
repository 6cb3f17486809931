// seqpar::sp::chunk_gated_delta_product: gated DeltaNet over the Householder sub-steps
// (matrix_state/householder_steps.h) through the sequence-parallel gated DeltaNet, so its
// cross-rank scan, packed sequences and gradients are that op's. A rank's slice of tokens is
// the slice of their sub-steps; slices still cut between tokens.
#include "matrix_state/householder_steps.h"
#include "seqpar/sp.h"

namespace seqpar::sp {

std::tuple<at::Tensor, at::Tensor> chunk_gated_delta_product(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const std::optional<at::Tensor>& g, const at::Tensor& beta, int64_t num_householder,
    std::optional<double> scale, const std::optional<at::Tensor>& initial_state,
    int64_t chunk_size, const std::shared_ptr<comm::Communicator>& group,
    const SpOptions& options, const std::optional<at::Tensor>& cu_seqlens) {
  const auto steps = matrix_state::householder_steps("seqpar.sp.chunk_gated_delta_product", q, k,
                                                     v, g.value_or(at::Tensor()), beta,
                                                     num_householder, cu_seqlens);
  auto [o, final_state] = chunk_gated_delta_rule(steps.q, k, v, steps.g, beta, scale,
                                                 initial_state, chunk_size, group, options,
                                                 steps.cu_seqlens);
  return {matrix_state::token_outputs(o, num_householder), final_state};
}

}  // namespace seqpar::sp
