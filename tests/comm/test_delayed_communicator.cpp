// DelayedCommunicator (the injected latency of emulated networks): a ping-pong between ranks 0
// and 1 takes at least two delays per round trip and not much more, collectives wait
// ceil(log2 P) delays, results of the rank scan are unchanged through the wrapper, split keeps
// the delay, the timeout is shared with the inner communicator, and SEQPAR_COMM_DELAY_US is
// parsed strictly.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <vector>

#include "seqpar/comm/delayed_communicator.h"
#include "seqpar/comm/mpi_communicator.h"
#include "seqpar/comm/rank_scan.h"

namespace seqpar::comm {
namespace {

using Clock = std::chrono::steady_clock;

TEST(DelayedCommunicator, PingPongPaysOneDelayPerHop) {
  auto world = std::make_shared<MpiCommunicator>();
  if (world->size() < 2) GTEST_SKIP() << "needs two ranks";
  const auto delay = std::chrono::microseconds(2000);
  DelayedCommunicator c(world, delay);
  EXPECT_DOUBLE_EQ(c.injected_latency_s(), 2e-3);
  EXPECT_EQ(c.backend_name(), "mpi");
  double value = 1.0;
  const int rounds = 5;
  world->barrier();
  const auto t0 = Clock::now();
  for (int i = 0; i < rounds; ++i) {
    if (c.rank() == 0) {
      c.send(host_buffer(&value, sizeof value, DataType::kFloat64), 1, 5);
      c.recv(host_buffer(&value, sizeof value, DataType::kFloat64), 1, 5);
    } else if (c.rank() == 1) {
      c.recv(host_buffer(&value, sizeof value, DataType::kFloat64), 0, 5);
      value += 1;
      c.send(host_buffer(&value, sizeof value, DataType::kFloat64), 0, 5);
    }
  }
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / rounds;
  if (c.rank() == 0) {
    EXPECT_EQ(value, 1.0 + rounds);
    EXPECT_GE(ms, 4.0);
    // Loose: ranks oversubscribe the cores in CI, and MPI polls while it waits.
    EXPECT_LT(ms, 4.0 + 100.0) << "a round trip took " << ms << " ms";
    std::printf("round trip with 2 x 2 ms injected: %.3f ms\n", ms);
  }
}

TEST(DelayedCommunicator, CollectivesWaitLogRounds) {
  auto world = std::make_shared<MpiCommunicator>();
  DelayedCommunicator c(world, std::chrono::microseconds(1000));
  int rounds = 0;
  while ((1 << rounds) < c.size()) ++rounds;
  double x = c.rank();
  const auto t0 = Clock::now();
  c.all_reduce_sum(host_buffer(&x, sizeof x, DataType::kFloat64));
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  EXPECT_EQ(x, c.size() * (c.size() - 1) / 2.0);
  EXPECT_GE(ms, rounds * 1.0);
  auto sub = c.split(c.rank() % 2, c.rank());
  EXPECT_GT(sub->injected_latency_s(), 0.0);
  EXPECT_NE(dynamic_cast<DelayedCommunicator*>(sub.get()), nullptr);
}

// The forwarding base (ForwardingCommunicator): the decorator starts with the inner
// communicator's timeout and a new timeout reaches both.
TEST(DelayedCommunicator, TimeoutIsSharedWithTheInnerCommunicator) {
  auto world = std::make_shared<MpiCommunicator>();
  world->set_timeout(std::chrono::milliseconds(4321));
  DelayedCommunicator c(world, std::chrono::microseconds(10));
  EXPECT_EQ(c.timeout(), std::chrono::milliseconds(4321));
  c.set_timeout(std::chrono::milliseconds(1234));
  EXPECT_EQ(c.timeout(), std::chrono::milliseconds(1234));
  EXPECT_EQ(world->timeout(), std::chrono::milliseconds(1234));
}

TEST(DelayedCommunicator, RankScanResultsAreUnchanged) {
  auto world = std::make_shared<MpiCommunicator>();
  DelayedCommunicator c(world, std::chrono::microseconds(50));
  const at::Tensor A = at::full({4}, 0.5 + c.rank(), at::kDouble);
  const at::Tensor B = at::full({4}, 1.0 + c.rank(), at::kDouble);
  for (ExchangeAlgo algo : {ExchangeAlgo::kTree, ExchangeAlgo::kAllGather, ExchangeAlgo::kBlelloch,
                            ExchangeAlgo::kAuto}) {
    auto [ea, eb] = rank_exclusive_scan(c, A, B, false, algo);
    auto [wa, wb] = rank_exclusive_scan(*world, A, B, false, ExchangeAlgo::kAllGather);
    EXPECT_TRUE(at::equal(ea, wa) && at::equal(eb, wb)) << exchange_algo_name(algo);
  }
}

TEST(DelayedCommunicator, EnvironmentIsParsedStrictly) {
  auto make = [] { return std::unique_ptr<Communicator>(new MpiCommunicator()); };
  unsetenv("SEQPAR_COMM_DELAY_US");
  EXPECT_EQ(dynamic_cast<DelayedCommunicator*>(with_injected_delay(make()).get()), nullptr);
  setenv("SEQPAR_COMM_DELAY_US", "250", 1);
  auto delayed = with_injected_delay(make());
  ASSERT_NE(dynamic_cast<DelayedCommunicator*>(delayed.get()), nullptr);
  EXPECT_DOUBLE_EQ(delayed->injected_latency_s(), 250e-6);
  setenv("SEQPAR_COMM_DELAY_US", "abc", 1);
  EXPECT_THROW(with_injected_delay(make()), std::invalid_argument);
  setenv("SEQPAR_COMM_DELAY_US", "-5", 1);
  EXPECT_THROW(with_injected_delay(make()), std::invalid_argument);
  unsetenv("SEQPAR_COMM_DELAY_US");
  EXPECT_THROW(DelayedCommunicator(nullptr, std::chrono::microseconds(1)), std::invalid_argument);
}

}  // namespace
}  // namespace seqpar::comm
