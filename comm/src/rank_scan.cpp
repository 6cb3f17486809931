// The cross-rank exclusive scan's entry points (seqpar/comm/rank_scan.h): check the summaries,
// resolve the algorithm once (resolve_exchange_algo: the kind's exchange size and the cost
// model), and run it (exchange_algorithms.h, or the Blelloch schedule of scan_schedule.h).
#include "seqpar/comm/rank_scan.h"

#include <string>

#include "error.h"
#include "exchange_algorithms.h"
#include "seqpar/comm/scan_schedule.h"

namespace seqpar::comm {

ExchangeAlgo resolve_exchange_algo(const Communicator& comm, const SummaryKind& kind,
                                   const SummaryParts& own, ExchangeAlgo requested,
                                   bool whole_summaries) {
  ExchangeSize size = kind.exchange_size(own);
  if (whole_summaries) size.state_bytes = 0;
  return choose_exchange_algo(comm, size, requested, kind.elementwise());
}

SummaryParts rank_exclusive_scan(Communicator& comm, const SummaryKind& kind,
                                 const SummaryParts& own_in, bool reverse, ExchangeAlgo algo,
                                 Stream stream) {
  kind.check(own_in);
  SummaryParts own;
  for (const at::Tensor& t : own_in) {
    TORCH_CHECK(t.scalar_type() == own_in[0].scalar_type() && t.device() == own_in[0].device(),
                "seqpar rank_exclusive_scan: the parts of a ", kind.name(),
                " summary must share dtype and device");
    own.push_back(t.contiguous());
  }
  const auto t = own[0].scalar_type();
  TORCH_CHECK(t == at::kFloat || t == at::kDouble || t == at::kComplexFloat ||
                  t == at::kComplexDouble,
              "seqpar rank_exclusive_scan: summaries must be float32, float64, complex64 or "
              "complex128, got ",
              t);
  if (comm.size() == 1) return kind.identity_like(own);
  switch (resolve_exchange_algo(comm, kind, own, algo, /*whole_summaries=*/true)) {
    case ExchangeAlgo::kTree: return detail::tree_scan(comm, kind, own, reverse, stream);
    case ExchangeAlgo::kAllGather: return detail::all_gather_scan(comm, kind, own, reverse, stream);
    case ExchangeAlgo::kBlelloch: {
      const ScanSchedule schedule = blelloch_schedule(comm.size(), comm.rank(), reverse);
      auto result = run_scan_schedule(
          comm, schedule, own,
          [&kind](std::size_t, const SummaryParts& later, const SummaryParts& earlier) {
            return kind.combine(later, earlier);
          },
          stream);
      return result ? *result : kind.identity_like(own);
    }
    case ExchangeAlgo::kExscan:
      if (comm.offers_pair_exscan() && kind.elementwise())
        return detail::pair_exscan_scan(comm, kind, own, reverse);
      SEQPAR_COMM_FAIL(CommError, comm.backend_name(), "rank_exclusive_scan", comm.rank(), -1,
                       std::string("the exscan algorithm needs a communicator that offers it "
                                   "(MPI's) and an elementwise summary kind (this one is '") +
                           kind.name() + "')");
    case ExchangeAlgo::kRing:
      SEQPAR_COMM_FAIL(CommError, comm.backend_name(), "rank_exclusive_scan", comm.rank(), -1,
                       "the ring passes states, not summaries: use rank_entering_state");
    case ExchangeAlgo::kAuto: break;
  }
  SEQPAR_COMM_FAIL(CommError, comm.backend_name(), "rank_exclusive_scan", comm.rank(), -1,
                   "no algorithm chosen");
}

at::Tensor rank_entering_state(Communicator& comm, const SummaryKind& kind,
                               const SummaryParts& own_in, bool reverse, ExchangeAlgo algo,
                               Stream stream) {
  kind.check(own_in);
  if (comm.size() == 1) return at::zeros_like(own_in[1]);
  SummaryParts own;
  for (const at::Tensor& t : own_in) own.push_back(t.contiguous());
  const ExchangeAlgo chosen = resolve_exchange_algo(comm, kind, own, algo);
  if (chosen == ExchangeAlgo::kRing) return detail::ring_entering_state(comm, kind, own, reverse, stream);
  return rank_exclusive_scan(comm, kind, own, reverse, chosen, stream)[1];
}

std::pair<at::Tensor, at::Tensor> rank_exclusive_scan(Communicator& comm, const at::Tensor& A,
                                                      const at::Tensor& B, bool reverse,
                                                      ExchangeAlgo algo, Stream stream) {
  TORCH_CHECK(A.sizes() == B.sizes(), "seqpar rank_exclusive_scan: A and B shapes differ (",
              A.sizes(), " vs ", B.sizes(), ")");
  const SummaryParts e = rank_exclusive_scan(comm, diagonal_summary(), {A, B}, reverse, algo, stream);
  return {e[0], e[1]};
}

}  // namespace seqpar::comm
