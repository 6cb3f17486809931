// GoogleTest listener for programs run under mpirun: ranks other than 0 replace the default
// printer with this one, so only rank 0 prints the full report and the others print just
// their failures, prefixed with the rank.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>

namespace seqpar::testing_support {

class FailuresOnly : public testing::EmptyTestEventListener {
 public:
  explicit FailuresOnly(int rank) : rank_(rank) {}
  void OnTestPartResult(const testing::TestPartResult& result) override {
    if (result.failed())
      std::fprintf(stderr, "[rank %d] %s:%d: %s\n", rank_,
                   result.file_name() ? result.file_name() : "?", result.line_number(),
                   result.summary());
  }

 private:
  int rank_;
};

}  // namespace seqpar::testing_support
