// The exchange algorithms behind rank_exclusive_scan and rank_entering_state (rank_scan.h
// documents what each sends and its order of combines); the Blelloch schedule has its own
// file (scan_schedule.h). Internal to comm: callers go through rank_scan.h, which checks the
// summaries and resolves the algorithm first.
#pragma once

#include "seqpar/comm/communicator.h"
#include "seqpar/comm/summary_kind.h"

namespace seqpar::comm::detail {

// Recursive doubling over send_recv: E_r of `own`.
SummaryParts tree_scan(Communicator& comm, const SummaryKind& kind, const SummaryParts& own,
                       bool reverse, Stream stream);
// One all_gather of every summary, then a left fold of the predecessors.
SummaryParts all_gather_scan(Communicator& comm, const SummaryKind& kind,
                             const SummaryParts& own, bool reverse, Stream stream);
// The state handed from rank to rank: the state entering this rank (E_r applied to zeros).
at::Tensor ring_entering_state(Communicator& comm, const SummaryKind& kind,
                               const SummaryParts& own, bool reverse, Stream stream);
// The communicator's exclusive scan of pairs (Communicator::pair_exscan) for an elementwise
// kind of two same-shaped parts; the pairs go through host memory.
SummaryParts pair_exscan_scan(Communicator& comm, const SummaryKind& kind,
                              const SummaryParts& own, bool reverse);

}  // namespace seqpar::comm::detail
