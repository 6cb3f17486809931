// GoogleTest main for the trainer tests run under mpirun: builds the world communicator once
// (test_world()), prints the full report on rank 0 and only failures elsewhere.
#include <gtest/gtest.h>

#include "../common/rank_listener.h"
#include "test_world.h"

namespace {

std::shared_ptr<seqpar::comm::Communicator> g_world;

}  // namespace

std::shared_ptr<seqpar::comm::Communicator> test_world() { return g_world; }

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  g_world = seqpar::comm::make_world();
  if (g_world->rank() != 0) {
    auto& listeners = testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new seqpar::testing_support::FailuresOnly(g_world->rank()));
  }
  const int result = RUN_ALL_TESTS();
  g_world.reset();
  return result;
}
