// Closed-form checks of the MPI communicator's calls (docs/design.md rule 7): every input is derived
// from the rank and the element index, every expected value is exact.
#include <gtest/gtest.h>

#include <complex>
#include <numeric>

#include "seqpar/comm/bootstrap.h"
#include "seqpar/comm/mpi_communicator.h"

namespace seqpar::comm {
namespace {

template <typename T>
MutableBuffer buf(std::vector<T>& v, DataType dtype) {
  return host_buffer(v.data(), v.size() * sizeof(T), dtype);
}

TEST(MpiCommunicator, RankAndSizeMatchTheWorld) {
  MpiCommunicator c;
  int rank = -1, size = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  EXPECT_EQ(c.rank(), rank);
  EXPECT_EQ(c.size(), size);
  EXPECT_EQ(c.backend_name(), "mpi");
  LaunchInfo info = detect_launch();
  EXPECT_EQ(info.launcher, Launcher::kMpirun);
  EXPECT_EQ(info.rank, rank);
  EXPECT_EQ(info.world_size, size);
}

TEST(MpiCommunicator, SendRecvRingAndSelfPairs) {
  MpiCommunicator c;
  const int P = c.size(), r = c.rank();
  for (std::size_t n : {std::size_t(0), std::size_t(1), std::size_t(1000), std::size_t(70001)}) {
    std::vector<double> out(n), in(n, -1.0);
    for (std::size_t i = 0; i < n; ++i) out[i] = r * 1e6 + static_cast<double>(i);
    c.send_recv(buf(out, DataType::kFloat64), (r + 1) % P, buf(in, DataType::kFloat64),
                (r + P - 1) % P, /*tag=*/3);
    const int left = (r + P - 1) % P;
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(in[i], left * 1e6 + i) << "n=" << n;
  }
  // Plain send/recv between pairs (0,1), (2,3), ...; an odd last rank sits out.
  std::vector<int64_t> v(5);
  const int partner = r ^ 1;
  if (partner < P) {
    if (r % 2 == 0) {
      std::iota(v.begin(), v.end(), 10 * r);
      c.send(buf(v, DataType::kInt64), partner, 4);
    } else {
      c.recv(buf(v, DataType::kInt64), partner, 4);
      for (int i = 0; i < 5; ++i) EXPECT_EQ(v[i], 10 * partner + i);
    }
  }
}

TEST(MpiCommunicator, AllGatherPlacesRankBlocksInOrder) {
  MpiCommunicator c;
  const int P = c.size(), r = c.rank();
  const std::size_t n = 33;
  std::vector<float> mine(n), all(n * P, -1.f);
  for (std::size_t i = 0; i < n; ++i) mine[i] = static_cast<float>(100 * r + i);
  c.all_gather(buf(mine, DataType::kFloat32), buf(all, DataType::kFloat32));
  for (int q = 0; q < P; ++q)
    for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(all[q * n + i], static_cast<float>(100 * q + i));
}

TEST(MpiCommunicator, AllReduceSumIsExact) {
  MpiCommunicator c;
  const int P = c.size(), r = c.rank();
  const std::size_t n = 1001;
  std::vector<double> d(n);
  std::vector<int64_t> k(n);
  std::vector<std::complex<double>> z(n);
  for (std::size_t i = 0; i < n; ++i) {
    d[i] = (r + 1.0) * (i + 1.0);
    k[i] = static_cast<int64_t>((r + 1) * (i + 1));
    z[i] = {static_cast<double>(r), -static_cast<double>(i)};
  }
  c.all_reduce_sum(buf(d, DataType::kFloat64));
  c.all_reduce_sum(buf(k, DataType::kInt64));
  c.all_reduce_sum(buf(z, DataType::kComplex128));
  for (std::size_t i = 0; i < n; ++i) {
    EXPECT_EQ(d[i], (i + 1.0) * P * (P + 1) / 2.0);
    EXPECT_EQ(k[i], static_cast<int64_t>((i + 1) * P * (P + 1) / 2));
    EXPECT_EQ(z[i], std::complex<double>(P * (P - 1) / 2.0, -static_cast<double>(i) * P));
  }
}

TEST(MpiCommunicator, BroadcastFromEveryRoot) {
  MpiCommunicator c;
  const int P = c.size(), r = c.rank();
  for (int root = 0; root < P; ++root) {
    std::vector<int32_t> v(17, -1);
    if (r == root) std::iota(v.begin(), v.end(), 7 * root);
    c.broadcast(buf(v, DataType::kInt32), root);
    for (int i = 0; i < 17; ++i) EXPECT_EQ(v[i], 7 * root + i);
  }
  c.barrier();
}

TEST(MpiCommunicator, GridSplitsConsecutiveRanksIntoSpGroups) {
  auto world = std::make_shared<MpiCommunicator>();
  const int P = world->size(), r = world->rank();
  for (int sp = 1; sp <= P; ++sp) {
    if (P % sp != 0) continue;
    Grid grid = make_grid(world, sp);
    EXPECT_EQ(grid.sp->size(), sp);
    EXPECT_EQ(grid.dp->size(), P / sp);
    EXPECT_EQ(grid.sp->rank(), r % sp);
    EXPECT_EQ(grid.dp->rank(), r / sp);
    // The sum of world ranks in my sp group: consecutive ranks dp*sp .. dp*sp+sp-1.
    std::vector<int64_t> v{r};
    grid.sp->all_reduce_sum(host_buffer(v.data(), 8, DataType::kInt64));
    const int64_t base = static_cast<int64_t>(r / sp) * sp;
    EXPECT_EQ(v[0], sp * base + sp * (sp - 1) / 2);
    std::vector<int64_t> w{r};
    grid.dp->all_reduce_sum(host_buffer(w.data(), 8, DataType::kInt64));
    const int dp = P / sp;
    EXPECT_EQ(w[0], dp * (r % sp) + static_cast<int64_t>(sp) * dp * (dp - 1) / 2);
  }
  if (P > 1 && P % 2 == 1) {
    EXPECT_THROW(make_grid(world, 2), CommError);
  }
}

TEST(MpiCommunicator, ErrorsNameTheCallRankAndPeer) {
  MpiCommunicator c;
  std::vector<double> v(1);
  try {
    c.send(host_buffer(v.data(), 8, DataType::kFloat64), c.size() + 3, 1);
    FAIL() << "send to a rank outside the group did not throw";
  } catch (const CommError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("send"), std::string::npos) << what;
    EXPECT_NE(what.find("rank " + std::to_string(c.rank())), std::string::npos) << what;
    EXPECT_NE(what.find("peer " + std::to_string(c.size() + 3)), std::string::npos) << what;
    EXPECT_NE(what.find("mpi_communicator.cpp:"), std::string::npos) << what;
    EXPECT_EQ(e.peer(), c.size() + 3);
  }
}

TEST(MpiCommunicator, MovedCommunicatorKeepsWorking) {
  MpiCommunicator a;
  MpiCommunicator b(std::move(a));
  std::vector<int64_t> v{1};
  b.all_reduce_sum(host_buffer(v.data(), 8, DataType::kInt64));
  EXPECT_EQ(v[0], b.size());
  EXPECT_THROW(a.barrier(), CommError);  // NOLINT(bugprone-use-after-move): checked on purpose
}

}  // namespace
}  // namespace seqpar::comm
