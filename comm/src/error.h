// Internal helpers to throw CommError with the call site's file:line (docs/design.md rule 6).
#pragma once

#include "seqpar/comm/comm_error.h"

#define SEQPAR_COMM_FAIL(ErrorType, backend, call, rank, peer, detail) \
  throw ErrorType((backend), (call), (rank), (peer), (detail), __FILE__, __LINE__)

#define SEQPAR_COMM_CHECK(cond, backend, call, rank, peer, detail)                  \
  do {                                                                              \
    if (!(cond)) SEQPAR_COMM_FAIL(::seqpar::comm::CommError, backend, call, rank, peer, detail); \
  } while (0)
