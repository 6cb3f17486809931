// seqpar::sp::previous_steps (seqpar/sp.h): the `width` steps before this rank's slice, which
// may lie on several earlier ranks when slices are short or empty.
//
// The window W of the last `width` steps (rows oldest first) follows an affine recurrence:
// each step moves the rows up by one and writes its input into the last row. A slice of T
// steps is therefore the map W -> Shift^T W + E, with Shift^T[i][i + T] = 1 (zero when
// T >= width) and E the slice's last min(T, width) steps in the last rows. That is a matrix
// summary (M, E) like gated DeltaNet's, so the window entering each rank comes from the same
// cross-rank exclusive scan (entering_state.h), `initial` folded in on rank 0, and the
// backward is that scan's adjoint: the gradient of each window row flows back to the rank
// that owns the step, through M^T in reverse rank order. Values are copied, never summed
// (M holds zeros and ones), so the result is exact in any dtype.
#include <algorithm>

#include "seqpar/previous_steps.h"
#include "seqpar/sp.h"
#include "sp/entering_state.h"

namespace seqpar::sp {

std::tuple<at::Tensor, at::Tensor> previous_steps(const at::Tensor& x, int64_t width,
                                                  const std::optional<at::Tensor>& initial,
                                                  const std::shared_ptr<comm::Communicator>& group,
                                                  const SpOptions& options) {
  TORCH_CHECK(group != nullptr, "seqpar::sp::previous_steps: group is null");
  const bool first = group->rank() == 0;
  // The local function checks every argument; run its checks first.
  seqpar::previous_steps(x.narrow(1, 0, 0), width, first ? initial : std::nullopt);
  check_ranks_agree(*group, "seqpar.sp.previous_steps", "(batch, channels, width, dtype)",
                    {x.size(0), x.size(2), width, static_cast<int64_t>(x.scalar_type())},
                    "the same batch and channels, with the same width");
  const at::ScalarType dt = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), m = std::min(T, width);
  // Built from x even for an empty slice, so that autograd reaches this rank's backward
  // collectives.
  const at::Tensor E = at::cat(
      {at::zeros({B, width - m, C}, x.options().dtype(dt)), x.narrow(1, T - m, m).to(dt)}, 1);
  at::Tensor shift = at::zeros({width, width}, E.options());
  if (T < width) shift.diagonal(T).fill_(1);
  const at::Tensor M = shift.expand({B, width, width}).contiguous();
  std::optional<at::Tensor> h0;
  if (first && initial && initial->defined()) h0 = initial->to(dt);
  const int64_t algo = resolve_algo(*group, options, Transition::kMatrix, M, E);
  const at::Tensor before = EnteringState::apply(M, E, h0, static_cast<int64_t>(Transition::kMatrix),
                                                 group, algo);
  const at::Tensor last = FinalFromLast::apply(at::matmul(M, before) + E, group);
  return {before.to(x.scalar_type()), last.to(x.scalar_type())};
}

}  // namespace seqpar::sp
