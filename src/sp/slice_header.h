// The agreement check every sequence-parallel scan runs before it exchanges a summary: each rank
// describes its slice (dtype, device kind, batch, channel shape, reverse flag, algorithm; the
// time length may differ) in a fixed-size header, all ranks gather all headers, and every rank
// throws the same error, naming the op and the first rank that disagrees, instead of hanging in
// a collective of mismatched sizes. Shared by sp.scan and sp.block_scan.
#pragma once

#include <ATen/ATen.h>

#include "seqpar/comm/communicator.h"
#include "seqpar/comm/exchange_algo.h"

namespace seqpar::sp {

// seq: this rank's (batch, time, *channels) slice. Collective.
void check_headers_agree(const char* op, comm::Communicator& group, const at::Tensor& seq,
                         bool reverse, comm::ExchangeAlgo algo);

}  // namespace seqpar::sp
