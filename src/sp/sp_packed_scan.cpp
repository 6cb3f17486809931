// seqpar::sp::scan over packed sequences (cu_seqlens; seqpar/sp.h): the diagonal recurrence
// on the one mechanism of sp/packed_slice.h. A slice inside one sequence keeps its summary
// (prod a, its run from zeros); a slice with a sequence start has (0, the run of its last
// segment from that sequence's initial state). Summaries and the entering state travel in the
// kernels' accumulation dtype (docs/accuracy.md), as in the unpacked sp scan. reverse runs
// every sequence from its own end: the same mechanism on the pack seen from its end, the
// exchange in reverse rank order.
#include "seqpar/scan.h"
#include "seqpar/sp.h"

#include "ops/kernel_params.h"
#include "sp/entering_state.h"
#include "sp/packed_slice.h"

namespace seqpar::sp {

std::tuple<at::Tensor, at::Tensor> packed_scan(const at::Tensor& a, const at::Tensor& b,
                                               const std::optional<at::Tensor>& h0, bool reverse,
                                               const at::Tensor& cu_seqlens,
                                               const std::shared_ptr<comm::Communicator>& group,
                                               const SpOptions& options) {
  constexpr const char* op = "seqpar.sp.scan";
  TORCH_CHECK(a.dim() >= 2 && a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type(), op,
              ": 'a' and 'b' must be (batch, time, *channels) of one shape and dtype, got ",
              a.sizes(), " and ", b.sizes());
  const PackedSlice slice = packed_slice(*group, op, cu_seqlens, a.size(0), a.size(1), reverse);
  std::vector<int64_t> header{a.dim(), static_cast<int64_t>(a.scalar_type())};
  for (int64_t d = 2; d < a.dim(); ++d) header.push_back(a.size(d));
  check_ranks_agree(*group, op, "(dims, dtype, channels)", header,
                    "the same dtype and channels");
  const at::ScalarType acc = ops::accumulation_dtype(a.scalar_type());
  std::vector<int64_t> row_shape{1};
  for (int64_t d = 2; d < a.dim(); ++d) row_shape.push_back(a.size(d));
  // With reverse, run_packed sees sequences from the end of the pack (packed_slice.h): the
  // initial rows and the final states are flipped into and out of that order.
  const auto view_rows = [&](const at::Tensor& x) { return reverse ? x.flip(0) : x; };
  PackedRecurrence r;
  r.transition = Transition::kDiagonal;
  if (h0 && h0->defined()) {
    std::vector<int64_t> want = row_shape;
    want[0] = slice.sequences;
    TORCH_CHECK(h0->sizes() == at::IntArrayRef(want), op, ": argument 'h0' must have shape ",
                "(sequences of 'cu_seqlens', *channels) = ", at::IntArrayRef(want),
                ", the same on every rank, got ", h0->sizes());
    r.initial = view_rows(h0->to(acc));
  }
  // A zero built from a and b (sums over no steps): what it is added to reaches their graphs
  // even on a rank with an empty slice.
  const at::Tensor tie = a.narrow(1, 0, 0).to(acc).sum() + b.narrow(1, 0, 0).to(acc).sum();
  r.zero_row = at::zeros(row_shape, a.options().dtype(acc)) + tie;
  // The local scan over the slice's steps [lo, end) in the view's order (with reverse: the
  // local steps [0, n - lo) run from their end), from init rows and with local bounds cu, both
  // in the view's order; returns (h, the final state of every local segment in that order).
  const auto local = [&](int64_t lo, const std::optional<at::Tensor>& init,
                         const std::optional<at::Tensor>& cu) {
    ScanOptions o;
    o.reverse = reverse;
    const int64_t n = a.size(1) - lo;
    std::optional<at::Tensor> init_in;
    if (init) init_in = view_rows(init->to(a.scalar_type()));
    if (cu) o.cu_seqlens = reverse ? (n - cu->flip(0)).contiguous() : *cu;
    const int64_t start = reverse ? 0 : lo;
    auto [h, last] = seqpar::scan(a.narrow(1, start, n), b.narrow(1, start, n), init_in, o);
    return std::make_tuple(h, cu ? view_rows(last) : last);
  };
  r.continuing_summary = [&] {
    const at::Tensor E = std::get<1>(local(0, std::nullopt, std::nullopt)).to(acc) + tie;
    return std::make_pair(a.to(acc).prod(1), E);
  };
  r.tail_state = [&](int64_t lo, const at::Tensor& init) {
    return std::get<1>(local(lo, init, std::nullopt)).to(acc) + tie;
  };
  r.run = [&](const at::Tensor& init_rows, const at::Tensor& local_cu) {
    auto [h, last] = local(0, init_rows, local_cu);
    return std::make_tuple(h, last.to(acc));
  };
  const PackedResult res = run_packed(group, options, slice, r);
  return {res.outputs, view_rows(res.finals).to(a.scalar_type())};
}

}  // namespace seqpar::sp
