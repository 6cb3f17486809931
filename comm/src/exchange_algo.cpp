// Names of the exchange algorithms (seqpar/comm/exchange_algo.h): the one spelling shared by the
// C++ options, the Python `algo=` argument, seqpar-train's `sp_algo` and SEQPAR_SP_ALGO.
#include "seqpar/comm/exchange_algo.h"

#include <stdexcept>

namespace seqpar::comm {

const char* exchange_algo_name(ExchangeAlgo algo) {
  switch (algo) {
    case ExchangeAlgo::kAuto: return "auto";
    case ExchangeAlgo::kTree: return "tree";
    case ExchangeAlgo::kExscan: return "exscan";
    case ExchangeAlgo::kAllGather: return "allgather";
    case ExchangeAlgo::kRing: return "ring";
    case ExchangeAlgo::kBlelloch: return "blelloch";
  }
  return "unknown";
}

ExchangeAlgo parse_exchange_algo(const std::string& name) {
  if (name == "auto" || name.empty()) return ExchangeAlgo::kAuto;
  if (name == "tree") return ExchangeAlgo::kTree;
  if (name == "exscan") return ExchangeAlgo::kExscan;
  if (name == "allgather" || name == "all_gather") return ExchangeAlgo::kAllGather;
  if (name == "ring") return ExchangeAlgo::kRing;
  if (name == "blelloch") return ExchangeAlgo::kBlelloch;
  throw std::invalid_argument("seqpar: unknown sequence-parallel exchange algorithm '" + name +
                              "' (expected auto, tree, exscan, allgather, ring or blelloch)");
}

}  // namespace seqpar::comm
