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
#include "sp/packed_slice.h"

namespace seqpar::sp {
namespace {

// The window (width, C) of a slice: the map W -> Shift^T W + E (see above), E built from x even
// for an empty slice, so that autograd reaches this rank's backward collectives.
std::pair<at::Tensor, at::Tensor> window_summary(const at::Tensor& x, int64_t width,
                                                 at::ScalarType dt) {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), m = std::min(T, width);
  const at::Tensor E = at::cat(
      {at::zeros({B, width - m, C}, x.options().dtype(dt)), x.narrow(1, T - m, m).to(dt)}, 1);
  at::Tensor shift = at::zeros({width, width}, E.options());
  if (T < width) shift.diagonal(T).fill_(1);
  return {shift.expand({B, width, width}).contiguous(), E};
}

// Packed sequences (sp/packed_slice.h): `before` has one window per local segment (the
// convolution of this slice reads them with the local bounds, torch.ops.seqpar.sp_packed_bounds),
// `last` one per sequence, the same on every rank.
std::tuple<at::Tensor, at::Tensor> packed_previous_steps(
    const at::Tensor& x, int64_t width, const std::optional<at::Tensor>& initial,
    const at::Tensor& cu_seqlens, const std::shared_ptr<comm::Communicator>& group,
    const SpOptions& options) {
  constexpr const char* op = "seqpar.sp.previous_steps";
  seqpar::previous_steps(x.narrow(1, 0, 0), width, std::nullopt);
  const PackedSlice slice = packed_slice(*group, op, cu_seqlens, x.size(0), x.size(1));
  check_ranks_agree(*group, op, "(channels, width, dtype)",
                    {x.size(2), width, static_cast<int64_t>(x.scalar_type())},
                    "the same channels, with the same width");
  const at::ScalarType dt = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  PackedRecurrence r;
  r.transition = Transition::kMatrix;
  if (initial && initial->defined()) {
    TORCH_CHECK(initial->sizes() == at::IntArrayRef({slice.sequences, width, x.size(2)}), op,
                ": argument 'initial' must be (sequences of 'cu_seqlens', width, channels) = (",
                slice.sequences, ", ", width, ", ", x.size(2), "), the same on every rank, got ",
                initial->sizes());
    r.initial = initial->to(dt);
  }
  const at::Tensor xd = x.to(dt);
  r.zero_row = at::zeros({1, width, x.size(2)}, xd.options()) + xd.narrow(1, 0, 0).sum();
  r.continuing_summary = [&] { return window_summary(x, width, dt); };
  r.tail_state = [&](int64_t lo, const at::Tensor& init) {
    return std::get<1>(seqpar::previous_steps(xd.narrow(1, lo, x.size(1) - lo), width, init));
  };
  r.run = [&](const at::Tensor& init_rows, const at::Tensor& local_cu) {
    return seqpar::previous_steps(xd, width, init_rows, local_cu);
  };
  const PackedResult res = run_packed(group, options, slice, r);
  return {res.init_rows.to(x.scalar_type()), res.finals.to(x.scalar_type())};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> previous_steps(const at::Tensor& x, int64_t width,
                                                  const std::optional<at::Tensor>& initial,
                                                  const std::shared_ptr<comm::Communicator>& group,
                                                  const SpOptions& options,
                                                  const std::optional<at::Tensor>& cu_seqlens) {
  TORCH_CHECK(group != nullptr, "seqpar::sp::previous_steps: group is null");
  if (cu_seqlens && cu_seqlens->defined())
    return packed_previous_steps(x, width, initial, *cu_seqlens, group, options);
  const bool first = group->rank() == 0;
  // The local function checks every argument; run its checks first.
  seqpar::previous_steps(x.narrow(1, 0, 0), width, first ? initial : std::nullopt);
  check_ranks_agree(*group, "seqpar.sp.previous_steps", "(batch, channels, width, dtype)",
                    {x.size(0), x.size(2), width, static_cast<int64_t>(x.scalar_type())},
                    "the same batch and channels, with the same width");
  const at::ScalarType dt = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto [M, E] = window_summary(x, width, dt);
  std::optional<at::Tensor> h0;
  if (first && initial && initial->defined()) h0 = initial->to(dt);
  const int64_t algo = resolve_algo(*group, options, Transition::kMatrix, M, E);
  const at::Tensor before = EnteringState::apply(M, E, h0, static_cast<int64_t>(Transition::kMatrix),
                                                 group, algo, /*reverse=*/false);
  const at::Tensor last = FinalFromLast::apply(at::matmul(M, before) + E, group);
  return {before.to(x.scalar_type()), last.to(x.scalar_type())};
}

}  // namespace seqpar::sp
