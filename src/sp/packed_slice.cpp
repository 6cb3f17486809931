// See packed_slice.h.
#include "sp/packed_slice.h"

#include <string>

#include "ops/packed_sequences.h"
#include "seqpar/sp.h"

namespace seqpar::sp {
namespace {

// The N final states on every rank: a sum over ranks of each rank's rows (each row has one
// owner, the others hold zeros); the replicated result's gradient is summed over ranks.
class AllReduceSum : public torch::autograd::Function<AllReduceSum> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x,
                            std::shared_ptr<comm::Communicator> group) {
    at::Tensor out = x.contiguous().clone();
    if (group->size() > 1) group->all_reduce_sum(comm::mutable_buffer_of(out), stream_for(out));
    ctx->saved_data["group"] = c10::make_intrusive<CommunicatorHolder>(group);
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    comm::Communicator& g = *ctx->saved_data["group"].toCustomClass<CommunicatorHolder>()->comm;
    return {summed_over_ranks(g, grads[0]), at::Tensor()};
  }
};

// FNV-1a over the values: ranks compare this instead of the whole of cu_seqlens.
int64_t fingerprint(const int64_t* c, int64_t n) {
  uint64_t h = 1469598103934665603ull;
  for (int64_t i = 0; i < n; ++i) {
    h ^= static_cast<uint64_t>(c[i]);
    h *= 1099511628211ull;
  }
  return static_cast<int64_t>(h);
}

at::Tensor long_tensor(const std::vector<int64_t>& v) {
  return at::tensor(v, at::TensorOptions().dtype(at::kLong));
}

}  // namespace

at::Tensor packed_bounds(const at::Tensor& cu_seqlens, int64_t local_time,
                         const std::shared_ptr<comm::Communicator>& group) {
  TORCH_CHECK(group != nullptr, "seqpar::sp::packed_bounds: group is null");
  return packed_slice(*group, "seqpar.sp.packed_bounds", cu_seqlens, 1, local_time).local_cu;
}

PackedSlice packed_slice(comm::Communicator& group, const char* op, const at::Tensor& cu_seqlens,
                         int64_t batch, int64_t local_time, bool reverse) {
  // Each rank's own checks, reported to all: a rank that raised alone would leave the others
  // waiting in the next collective.
  std::string error;
  at::Tensor host;
  try {
    host = ops::check_cu_seqlens(op, cu_seqlens, batch, /*time=*/-1);
  } catch (const c10::Error& e) {
    error = e.what_without_backtrace();
  }
  const int64_t n = error.empty() ? host.size(0) : -1;
  const int64_t* c = error.empty() ? host.data_ptr<int64_t>() : nullptr;
  std::vector<int64_t> mine{error.empty() ? 0 : 1, n, c ? fingerprint(c, n) : 0,
                            c ? c[n - 1] : 0, local_time};
  const int P = group.size(), me = group.rank();
  std::vector<int64_t> all(mine.size() * P);
  group.all_gather(
      comm::host_buffer(mine.data(), mine.size() * sizeof(int64_t), comm::DataType::kInt64),
      comm::host_buffer(all.data(), all.size() * sizeof(int64_t), comm::DataType::kInt64));
  const auto at_rank = [&](int r, int i) { return all[r * mine.size() + i]; };
  TORCH_CHECK(error.empty(), error);
  int64_t total = 0, begin = 0;
  for (int r = 0; r < P; ++r) {
    TORCH_CHECK(at_rank(r, 0) == 0, op, ": rank ", r, " raised an error on its argument ",
                "'cu_seqlens' (see that rank's message)");
    TORCH_CHECK(at_rank(r, 1) == n && at_rank(r, 2) == mine[2], op, ": argument 'cu_seqlens' ",
                "differs between rank 0 and rank ", r, "; every rank must pass the same ",
                "boundaries of the whole pack");
    if (r < me) begin += at_rank(r, 4);
    total += at_rank(r, 4);
  }
  TORCH_CHECK(c[n - 1] == total, op, ": argument 'cu_seqlens' must end at the packed length ",
              total, " (the sum of the ranks' slices), got ", c[n - 1]);

  PackedSlice s;
  s.reverse = reverse;
  s.sequences = n - 1;
  // The view from the end: bounds total - c reversed, ranks after this one come before it.
  std::vector<int64_t> flipped;
  if (reverse) {
    for (int64_t i = n - 1; i >= 0; --i) flipped.push_back(total - c[i]);
    c = flipped.data();
    begin = total - begin - local_time;
  }
  s.begin = begin;
  const int64_t end = begin + local_time;
  if (me == (reverse ? P - 1 : 0)) {
    for (int64_t i = 0; i < s.sequences; ++i)
      if (c[i] == c[i + 1]) s.empty.push_back(i);
  }
  if (local_time == 0) {
    s.local_cu = long_tensor({0});
    return s;
  }
  const ops::PackedRange range = ops::packed_range(c, s.sequences, begin, end);
  s.first = range.first;
  s.segments = range.count;
  s.continues = range.begins_before;
  s.local_cu = long_tensor(range.bounds);
  for (int64_t i = 0; i < s.segments; ++i) {
    const int64_t seq = s.first + i;
    if (c[seq + 1] > c[seq] && c[seq + 1] <= end) s.ending.push_back(i);
  }
  return s;
}

PackedResult run_packed(const std::shared_ptr<comm::Communicator>& group, const SpOptions& options,
                        const PackedSlice& slice, const PackedRecurrence& r) {
  const auto row = [&](int64_t seq) {
    return r.initial.defined() ? r.initial.narrow(0, seq, 1) : r.zero_row;
  };
  at::Tensor M, E;
  if (slice.keeps_summary()) {
    std::tie(M, E) = r.continuing_summary();
  } else {
    // A sequence starts inside the slice: what enters it does not leave it.
    const int64_t last = slice.segments - 1;
    E = r.tail_state(slice.local_cu[last].item<int64_t>(), row(slice.first + last));
    std::vector<int64_t> sizes = E.sizes().vec();
    if (r.transition == Transition::kMatrix) sizes.back() = E.size(-2);
    M = at::zeros(sizes, E.options());
  }
  const int64_t algo = resolve_algo(*group, options, r.transition, M, E);
  const at::Tensor x = EnteringState::apply(M, E, std::nullopt, static_cast<int64_t>(r.transition),
                                            group, algo, slice.reverse);
  // One initial row per local segment. A segment that starts its sequence still reads x (times
  // zero), so that every rank's backward meets the exchange's collectives in the same order.
  at::Tensor init_rows = x.narrow(0, 0, 0);
  if (slice.segments > 0) {
    std::vector<at::Tensor> rows{slice.continues ? x : row(slice.first) + x * 0};
    for (int64_t i = 1; i < slice.segments; ++i) rows.push_back(row(slice.first + i));
    init_rows = at::cat(rows, 0);
  }
  auto [outputs, segment_finals] = r.run(init_rows, slice.local_cu);
  std::vector<int64_t> sizes = r.zero_row.sizes().vec();
  sizes[0] = slice.sequences;
  std::vector<int64_t> owned_rows, owned_sequences;
  for (int64_t i : slice.ending) {
    owned_rows.push_back(i);
    owned_sequences.push_back(slice.first + i);
  }
  const auto on = [&](const std::vector<int64_t>& v) { return long_tensor(v).to(x.device()); };
  at::Tensor finals = at::zeros(sizes, x.options())
                          .index_add(0, on(owned_sequences),
                                     segment_finals.index_select(0, on(owned_rows)));
  if (!slice.empty.empty() && r.initial.defined())
    finals = finals.index_add(0, on(slice.empty), r.initial.index_select(0, on(slice.empty)));
  // Results that no step of this slice made (an empty slice: a local op may return plain empty
  // tensors) still reach x, so that this rank's backward meets the exchanges' collectives.
  const at::Tensor tie = x.narrow(0, 0, 0).sum();
  if (outputs.numel() == 0) outputs = outputs + tie.to(outputs.scalar_type());
  return {outputs, AllReduceSum::apply(finals + tie, group), init_rows};
}

}  // namespace seqpar::sp
