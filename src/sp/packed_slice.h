// Packed sequences across ranks (docs/packed_sequences.md): cu_seqlens describes the whole
// pack and is the same on every rank; each rank holds its slice of the packed steps (uneven,
// possibly empty; a sequence may span several ranks).
//
// One mechanism serves every sp op (scan, GLA, gated DeltaNet, previous_steps): a rank's slice
// is a run of local segments, pieces of the sequences first..last. A sequence start inside the
// slice makes the slice's summary (0, E): nothing entering the slice survives it, and E is the
// state its last segment ends in from that sequence's own initial state. Otherwise the slice
// continues one sequence and keeps its usual summary. The cross-rank exclusive scan of the
// summaries (entering_state.h) then gives each rank the state entering its first segment, and
// every rank runs its local op with segments: the first from that entering state when it
// continues a sequence begun earlier, the others from their initial states. Each sequence's
// final state comes from the rank holding its last step (rank 0 gives the empty sequences');
// one all-reduce hands all N of them to every rank.
//
// reverse (the reverse scan, each sequence from its own end): the same mechanism on the pack
// seen from its end. Steps, sequences and ranks are all counted from the end (sequence j of
// that view is sequence N - 1 - j, rank order P - 1 .. 0), and the exchange runs in reverse rank
// order; the recurrence's pieces flip their slice in time to match.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <optional>
#include <tuple>
#include <vector>

#include "seqpar/comm/communicator.h"
#include "sp/entering_state.h"

namespace seqpar::sp {

struct PackedSlice {
  bool reverse = false;      // the view from the pack's end (above)
  int64_t sequences = 0;     // N
  int64_t begin = 0;         // this rank's first step in the pack
  int64_t first = 0;         // sequence of local segment 0 (local segments: first, first + 1, ...)
  int64_t segments = 0;      // local segments (0 for an empty slice)
  bool continues = false;    // local segment 0 continues a sequence begun on an earlier rank
  at::Tensor local_cu;       // int64 [segments + 1] on the host: the local segment bounds
  std::vector<int64_t> ending;  // local segments whose sequence (non-empty) ends on this rank
  std::vector<int64_t> empty;   // on the first rank: the empty sequences; elsewhere none
  // Whether the slice's summary is its usual one (an empty slice, or one piece of a sequence
  // that began earlier) rather than (0, E).
  bool keeps_summary() const { return segments == 0 || (segments == 1 && continues); }
};

// Checks cu_seqlens on every rank together (its own checks, the same values everywhere, the
// end at the sum of the slices' lengths, batch 1) so that all ranks raise the same error, and
// returns this rank's part (with reverse, in the view from the pack's end). op names the
// function in errors.
PackedSlice packed_slice(comm::Communicator& group, const char* op, const at::Tensor& cu_seqlens,
                         int64_t batch, int64_t local_time, bool reverse = false);

// A recurrence's pieces for run_packed. States have a leading row per sequence (the summaries
// and the entering state one row).
struct PackedRecurrence {
  Transition transition = Transition::kMatrix;
  // The slice's usual summary (M, E), built from the inputs even for an empty slice.
  std::function<std::pair<at::Tensor, at::Tensor>()> continuing_summary;
  // The state the local steps [lo, end) end in from `init` (one row): E of a slice with a start.
  std::function<at::Tensor(int64_t lo, const at::Tensor& init)> tail_state;
  // The local op with segments: (outputs, final state per local segment) from one initial row
  // per local segment.
  std::function<std::tuple<at::Tensor, at::Tensor>(const at::Tensor& init_rows,
                                                   const at::Tensor& local_cu)> run;
  at::Tensor initial;   // (N, ...) in the compute dtype, or undefined (zeros)
  at::Tensor zero_row;  // (1, ...) zeros in the compute dtype, built from every input
};

// (outputs of this slice, the N final states, the same on every rank; their gradients summed
// over ranks). Also returns the initial row of every local segment (previous_steps' `before`).
struct PackedResult {
  at::Tensor outputs, finals, init_rows;
};
PackedResult run_packed(const std::shared_ptr<comm::Communicator>& group, const SpOptions& options,
                        const PackedSlice& slice, const PackedRecurrence& r);

}  // namespace seqpar::sp
