// GoogleTest main for tests run under mpirun: initializes MPI once, prints the full report on
// rank 0 only (other ranks print just their failures), and makes every rank's exit code
// reflect its own result so that mpirun fails when any rank fails.
#include <gtest/gtest.h>

#include <cstdlib>

#include "../common/rank_listener.h"
#include "seqpar/comm/mpi_communicator.h"

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  seqpar::comm::ensure_mpi_initialized();
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    auto& listeners = testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new seqpar::testing_support::FailuresOnly(rank));
  }
  return RUN_ALL_TESTS();
}
