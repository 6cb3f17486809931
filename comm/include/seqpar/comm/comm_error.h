// The errors every communicator call throws (docs/design.md rule 6): what failed, on which
// rank, with which peer, where. Its own header so that comm's internal error macros
// (comm/src/error.h) and the Communicator interface both use it without including each other.
#pragma once

#include <stdexcept>
#include <string>

namespace seqpar::comm {

// Thrown by every communicator call. what() reads
//   "seqpar::comm <backend> <call> failed on rank R (peer P) at file:line: detail".
class CommError : public std::runtime_error {
 public:
  CommError(std::string backend, std::string call, int rank, int peer, std::string detail,
            const char* file, int line);
  const std::string& backend() const { return backend_; }
  const std::string& call() const { return call_; }
  int rank() const { return rank_; }
  int peer() const { return peer_; }  // -1 for collectives
  const std::string& detail() const { return detail_; }

 private:
  std::string backend_, call_, detail_;
  int rank_, peer_;
};

// A blocking call's deadline passed (a peer died, hangs, or never called).
class CommTimeoutError : public CommError {
 public:
  using CommError::CommError;
};

}  // namespace seqpar::comm
