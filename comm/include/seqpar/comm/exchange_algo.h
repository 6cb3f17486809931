// The algorithms of the cross-rank exclusive scan, as the one type every layer names them by:
// comm runs them (rank_scan.h), seqpar::sp's options carry one (sp.h), the Python ops take its
// name as `algo=` and seqpar-train as `sp_algo`. What each does and costs is in rank_scan.h;
// how kAuto is resolved (cost model, SEQPAR_SP_ALGO) in docs/sequence_parallel.md.
#pragma once

#include <string>

namespace seqpar::comm {

enum class ExchangeAlgo : int {
  kAuto,       // the cheapest under the cost model (or SEQPAR_SP_ALGO when set)
  kTree,       // recursive doubling over send/recv: ceil(log2 P) rounds
  kExscan,     // MPI_Exscan with a non-commutative user op (MPI, elementwise summaries)
  kAllGather,  // all-gather every summary, fold the predecessors locally
  kRing,       // the state passed rank to rank: P - 1 hops of one state
  kBlelloch,   // the static Blelloch up/down sweep (scan_schedule.h), for its combine order
};

// "auto", "tree", "exscan", "allgather", "ring", "blelloch".
const char* exchange_algo_name(ExchangeAlgo algo);
// The inverse of exchange_algo_name ("" and "all_gather" are accepted too); throws
// std::invalid_argument listing the names for anything else.
ExchangeAlgo parse_exchange_algo(const std::string& name);

}  // namespace seqpar::comm
