// The exchange algorithms of the cross-rank exclusive scan (exchange_algorithms.h), written
// once over a SummaryKind. Summaries travel packed into one flat buffer (summary_buffer.h).
// `position` is a rank's place in scan order (rank, or P - 1 - rank for reverse).
#include "exchange_algorithms.h"

#include "seqpar/comm/tensor_buffer.h"
#include "summary_buffer.h"

namespace seqpar::comm::detail {

namespace {
constexpr int kTreeTag = 7101;
}  // namespace

using detail::pack;
using detail::packed_numel;
using detail::unpack;

SummaryParts tree_scan(Communicator& comm, const SummaryKind& kind, const SummaryParts& own,
                       bool reverse, Stream stream) {
  const int P = comm.size();
  const int q = reverse ? P - 1 - comm.rank() : comm.rank();
  auto rank_of = [&](int position) { return reverse ? P - 1 - position : position; };
  SummaryParts exclusive = kind.identity_like(own);
  SummaryParts inclusive = own;  // composition of the window of positions ending at q
  const int64_t n = packed_numel(own);
  at::Tensor incoming = at::empty({n}, own[0].options());
  for (int d = 1; d < P; d *= 2) {
    const int dst = q + d < P ? rank_of(q + d) : -1;
    const int src = q - d >= 0 ? rank_of(q - d) : -1;
    at::Tensor outgoing = pack(inclusive);
    comm.send_recv(const_buffer_of(outgoing), dst, mutable_buffer_of(incoming), src, kTreeTag,
                   stream);
    if (src >= 0) {
      // The received window lies just before ours: it is applied first.
      const SummaryParts earlier = unpack(incoming, own);
      exclusive = kind.combine(exclusive, earlier);
      inclusive = kind.combine(inclusive, earlier);
      incoming = at::empty({n}, own[0].options());
    }
  }
  return exclusive;
}

SummaryParts all_gather_scan(Communicator& comm, const SummaryKind& kind,
                             const SummaryParts& own, bool reverse, Stream stream) {
  const int P = comm.size();
  const int q = reverse ? P - 1 - comm.rank() : comm.rank();
  at::Tensor mine = pack(own);
  at::Tensor all = at::empty({P, mine.numel()}, mine.options());
  comm.all_gather(const_buffer_of(mine), mutable_buffer_of(all), stream);
  SummaryParts exclusive = kind.identity_like(own);
  for (int position = 0; position < q; ++position) {
    const int r = reverse ? P - 1 - position : position;
    exclusive = kind.combine(unpack(all[r], own), exclusive);
  }
  return exclusive;
}

// The state handed from rank to rank: position q receives the state entering it from q - 1 and
// sends its summary applied to it to q + 1.
at::Tensor ring_entering_state(Communicator& comm, const SummaryKind& kind,
                               const SummaryParts& own, bool reverse, Stream stream) {
  const int P = comm.size();
  const int q = reverse ? P - 1 - comm.rank() : comm.rank();
  auto rank_of = [&](int position) { return reverse ? P - 1 - position : position; };
  at::Tensor state = at::zeros_like(own[1]);
  if (q > 0) {
    comm.send_recv(ConstBuffer{}, -1, mutable_buffer_of(state), rank_of(q - 1), kTreeTag + 1,
                   stream);
  }
  if (q + 1 < P) {
    at::Tensor next = kind.apply(own, state).contiguous();
    at::Tensor none = at::empty({0}, own[1].options());
    comm.send_recv(const_buffer_of(next), rank_of(q + 1), mutable_buffer_of(none), -1,
                   kTreeTag + 1, stream);
  }
  return state;
}

SummaryParts pair_exscan_scan(Communicator& comm, const SummaryKind& kind,
                              const SummaryParts& own, bool reverse) {
  const int P = comm.size();
  const int q = reverse ? P - 1 - comm.rank() : comm.rank();
  const int64_t D = own[0].numel();
  // Interleaved (A_i, B_i) pairs on the host: MPI runs the user op on the CPU.
  const at::Tensor pairs =
      at::stack({own[0].reshape({D}), own[1].reshape({D})}, 1).to(at::kCPU).contiguous();
  at::Tensor result = at::empty_like(pairs);
  comm.pair_exscan(const_buffer_of(pairs), mutable_buffer_of(result), reverse);
  if (q == 0) return kind.identity_like(own);  // the first rank in scan order gets no result
  result = result.to(own[0].device());
  return {result.select(1, 0).reshape(own[0].sizes()).contiguous(),
          result.select(1, 1).reshape(own[1].sizes()).contiguous()};
}

}  // namespace seqpar::comm::detail
