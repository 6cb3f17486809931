// See determinism.h.
#include "ops/determinism.h"

#include <ATen/Context.h>

namespace seqpar::ops {
namespace {
thread_local bool requested_here = false;
}  // namespace

bool deterministic_requested() {
  return requested_here || at::globalContext().deterministicAlgorithms();
}

DeterministicScope::DeterministicScope(bool on) : previous_(requested_here) {
  requested_here = previous_ || on;
}
DeterministicScope::~DeterministicScope() { requested_here = previous_; }

}  // namespace seqpar::ops
