// A cross-rank exclusive scan in a fixed order, written as an explicit per-rank schedule of
// sends, receives and combines (docs/design.md section 4, "Prefix-scannable models").
//
// Why a schedule: a learned aggregation (prefix-scannable models) is not associative, so the
// result depends on the parenthesization, and it must match what one device computes; and its
// backward pass must run the same exchanges mirrored, with gradients flowing back along every
// message. Writing the order down once as data lets the forward executor and the adjoint
// executor (and a caller that records each combine for autograd) walk the same steps.
//
// The order is the static Blelloch scan over P positions (scan order), padded to the next
// power of two with positions that do not exist and never reach a combine:
//   up-sweep   for w = 1, 2, 4, ...: the node [b, b + 2w) = Agg(left [b, b+w), right [b+w, b+2w));
//   down-sweep the root's prefix is the identity; a node's prefix passes to its left child,
//              and its right child gets Agg(node prefix, left value).
// Position q's result is then the left fold of the aligned power-of-two blocks that tile
// [0, q), largest first, each block's value a balanced tree:
//   E_q = ((B_1 . B_2) . B_3) ...  with B . B' = combine(later = B', earlier = B).
// This is exactly what a single device's static Blelloch scan over the concatenated items gives
// when every position holds an aligned power-of-two block of them; it never depends on timing.
//
// A block's value lives on its last existing position (its owner). Identities are structural
// (a node starting at position 0 has the identity as prefix), so no identity is ever sent or
// combined. 2 * ceil(log2 P) rounds; each position makes at most one combine per round and
// unused combines (the root's, and values no later step reads) are pruned.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <optional>
#include <vector>

#include "seqpar/comm/communicator.h"
#include "seqpar/comm/summary_kind.h"

namespace seqpar::comm {

struct ScanStep {
  enum class Op : int { kSend, kRecv, kCombine };
  Op op = Op::kSend;
  int peer = -1;     // kSend / kRecv: the peer's rank in the communicator
  int slot = -1;     // kSend: the slot sent; kRecv: the slot filled; kCombine: the slot written
  int later = -1;    // kCombine: slot = combine(later, earlier)
  int earlier = -1;
};

// One rank's part of the scan. Slot 0 holds the rank's own summary; `result` is the slot that
// holds its exclusive prefix at the end, or -1 when that is the identity (the first position).
struct ScanSchedule {
  int slots = 1;
  int result = -1;
  std::vector<ScanStep> steps;
  int combines() const;  // kCombine steps
};

// The Blelloch schedule of `rank` among `P` ranks. reverse = false scans in rank order;
// reverse = true in reverse rank order (position = P - 1 - rank).
ScanSchedule blelloch_schedule(int P, int rank, bool reverse);

// later o earlier for the combine step at index `step` of the schedule.
using ScheduleCombine = std::function<SummaryParts(std::size_t step, const SummaryParts& later,
                                                   const SummaryParts& earlier)>;

// Runs the schedule. Every rank of `comm` calls it with its own schedule (blelloch_schedule
// with the same P and reverse) and summaries of the same shapes and dtype. Returns the
// exclusive prefix, or nullopt for the identity.
std::optional<SummaryParts> run_scan_schedule(Communicator& comm, const ScanSchedule& schedule,
                                              const SummaryParts& own,
                                              const ScheduleCombine& combine, Stream stream = {});

// The vector-Jacobian product of the combine at `step`: given the gradient of its output,
// returns (gradient of later, gradient of earlier).
using ScheduleCombineVjp = std::function<std::pair<SummaryParts, SummaryParts>(
    std::size_t step, const SummaryParts& grad_out)>;

// The backward pass of run_scan_schedule: the steps in reverse, each send answered by
// receiving the gradient of what was sent and each receive by sending the gradient of what
// was received. `grad_result` is the gradient of the returned prefix (ignored when the result
// was the identity; empty parts read as zeros). Returns the gradient of `own` (shaped like
// `like`). Collective like the forward.
SummaryParts run_scan_schedule_adjoint(Communicator& comm, const ScanSchedule& schedule,
                                       const SummaryParts& like, const SummaryParts& grad_result,
                                       const ScheduleCombineVjp& vjp, Stream stream = {});

}  // namespace seqpar::comm
