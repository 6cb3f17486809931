// The cross-rank exclusive scan against a sequential fold of every rank's summary, for the
// diagonal and the matrix kinds. Summaries are derived from (rank, element) with values in
// {±1/2, ±1, ±2} (diagonal), {-1, 0, 1} (matrix transitions) and small integers, so every
// composition is exact in binary floating point and results compare with equality whatever
// the parenthesization of the algorithm.
#include <gtest/gtest.h>

#include <cstdlib>

#include "seqpar/comm/mpi_communicator.h"
#include "seqpar/comm/rank_scan.h"

namespace seqpar::comm {
namespace {

using Summary = std::pair<at::Tensor, at::Tensor>;

Summary summary_of_rank(int r, at::ScalarType dtype) {
  const int64_t batch = 3, channels = 5;
  at::Tensor idx = at::arange(batch * channels, at::kDouble).reshape({batch, channels});
  // A in {0.5, 2, 1, -1}: exact products; B small integers.
  at::Tensor sel = at::remainder(idx + r, 4);
  at::Tensor A = at::where(sel == 0, at::full_like(idx, 0.5),
                           at::where(sel == 1, at::full_like(idx, 2.0),
                                     at::where(sel == 2, at::full_like(idx, 1.0),
                                               at::full_like(idx, -1.0))));
  at::Tensor B = (r + 1) + at::remainder(idx, 3);
  if (at::isComplexType(dtype)) {
    // Multiply A by i on odd elements: unit rotations keep everything exact.
    at::Tensor rot = at::where(at::remainder(idx, 2) == 1, at::full_like(idx, 0.0),
                               at::full_like(idx, 1.0));
    at::Tensor rot_im = 1.0 - rot;
    return {at::complex(A * rot, A * rot_im).to(dtype), at::complex(B, -B * 0.5).to(dtype)};
  }
  return {A.to(dtype), B.to(dtype)};
}

Summary expected_exclusive(int rank, int P, bool reverse, at::ScalarType dtype) {
  Summary e = summary_of_rank(rank, dtype);
  e = {at::ones_like(e.first), at::zeros_like(e.second)};
  const int q = reverse ? P - 1 - rank : rank;
  for (int position = 0; position < q; ++position) {
    const int r = reverse ? P - 1 - position : position;
    e = compose(summary_of_rank(r, dtype), e);
  }
  return e;
}

struct Case {
  ExchangeAlgo algo;
  bool reverse;
  at::ScalarType dtype;
};

class RankScan : public testing::TestWithParam<Case> {};

TEST_P(RankScan, MatchesSequentialFoldExactly) {
  const Case c = GetParam();
  MpiCommunicator comm;
  Summary own = summary_of_rank(comm.rank(), c.dtype);
  auto [A, B] = rank_exclusive_scan(comm, own.first, own.second, c.reverse, c.algo);
  Summary want = expected_exclusive(comm.rank(), comm.size(), c.reverse, c.dtype);
  EXPECT_EQ(A.sizes(), own.first.sizes());
  EXPECT_TRUE(at::equal(A, want.first)) << "rank " << comm.rank() << "\n" << A << "\n" << want.first;
  EXPECT_TRUE(at::equal(B, want.second)) << "rank " << comm.rank() << "\n" << B << "\n" << want.second;
}

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  for (ExchangeAlgo algo : {ExchangeAlgo::kTree, ExchangeAlgo::kAllGather, ExchangeAlgo::kExscan,
                            ExchangeAlgo::kBlelloch, ExchangeAlgo::kAuto})
    for (bool reverse : {false, true})
      for (at::ScalarType dtype : {at::kDouble, at::kFloat, at::kComplexDouble, at::kComplexFloat})
        cases.push_back({algo, reverse, dtype});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(AllAlgorithms, RankScan, testing::ValuesIn(all_cases()),
                         [](const testing::TestParamInfo<Case>& info) {
                           return std::string(exchange_algo_name(info.param.algo)) +
                                  (info.param.reverse ? "_reverse_" : "_forward_") +
                                  std::string(c10::toString(info.param.dtype));
                         });

// Matrix kind: M_r (2, 3, 3) with entries in {-1, 0, 1}, E_r (2, 3, 4) small integers; products
// of up to 8 such maps stay integers below 2^24, exact in float32.
SummaryParts matrix_summary_of_rank(int r, at::ScalarType dtype) {
  at::Tensor i = at::arange(3, at::kDouble).view({1, 3, 1});
  at::Tensor j = at::arange(3, at::kDouble).view({1, 1, 3});
  at::Tensor b = at::arange(2, at::kDouble).view({2, 1, 1});
  at::Tensor M = at::remainder(i + 2 * j + b + r, 3) - 1;
  at::Tensor E = at::remainder(at::arange(24, at::kDouble).view({2, 3, 4}) + r, 5) - 2;
  return {M.to(dtype), E.to(dtype)};
}

class MatrixRankScan : public testing::TestWithParam<Case> {};

TEST_P(MatrixRankScan, MatchesSequentialFoldExactly) {
  const Case c = GetParam();
  MpiCommunicator comm;
  const SummaryKind& kind = matrix_summary();
  const int P = comm.size(), q = c.reverse ? P - 1 - comm.rank() : comm.rank();
  SummaryParts want = kind.identity_like(matrix_summary_of_rank(0, c.dtype));
  for (int position = 0; position < q; ++position)
    want = kind.combine(matrix_summary_of_rank(c.reverse ? P - 1 - position : position, c.dtype), want);
  const SummaryParts got = rank_exclusive_scan(comm, kind, matrix_summary_of_rank(comm.rank(), c.dtype),
                                               c.reverse, c.algo);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(at::equal(got[0], want[0])) << "rank " << comm.rank() << "\n" << got[0] << "\n" << want[0];
  EXPECT_TRUE(at::equal(got[1], want[1])) << "rank " << comm.rank() << "\n" << got[1] << "\n" << want[1];
}

std::vector<Case> matrix_cases() {
  std::vector<Case> cases;
  for (ExchangeAlgo algo : {ExchangeAlgo::kTree, ExchangeAlgo::kAllGather, ExchangeAlgo::kBlelloch,
                            ExchangeAlgo::kAuto})
    for (bool reverse : {false, true})
      for (at::ScalarType dtype : {at::kDouble, at::kFloat}) cases.push_back({algo, reverse, dtype});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(MatrixKind, MatrixRankScan, testing::ValuesIn(matrix_cases()),
                         [](const testing::TestParamInfo<Case>& info) {
                           return std::string(exchange_algo_name(info.param.algo)) +
                                  (info.param.reverse ? "_reverse_" : "_forward_") +
                                  std::string(c10::toString(info.param.dtype));
                         });

// MPI_Exscan's elementwise op cannot combine matrices: asked for, it is an error naming the
// kind; through SEQPAR_SP_ALGO=exscan, the tree runs instead.
TEST(MatrixRankScan, ExscanIsRefusedOrReplaced) {
  MpiCommunicator comm;
  const SummaryParts own = matrix_summary_of_rank(comm.rank(), at::kDouble);
  if (comm.size() > 1) {
    try {
      rank_exclusive_scan(comm, matrix_summary(), own, false, ExchangeAlgo::kExscan);
      FAIL() << "no error";
    } catch (const CommError& e) {
      EXPECT_NE(std::string(e.what()).find("'matrix'"), std::string::npos) << e.what();
    }
  }
  setenv("SEQPAR_SP_ALGO", "exscan", 1);
  EXPECT_EQ(resolve_exchange_algo(comm, matrix_summary(), own, ExchangeAlgo::kAuto),
            ExchangeAlgo::kTree);
  const SummaryParts via_env = rank_exclusive_scan(comm, matrix_summary(), own, false);
  unsetenv("SEQPAR_SP_ALGO");
  const SummaryParts via_tree = rank_exclusive_scan(comm, matrix_summary(), own, false, ExchangeAlgo::kTree);
  EXPECT_TRUE(at::equal(via_env[1], via_tree[1]));
}

// rank_entering_state, every algorithm (the ring passes states), both kinds and directions:
// the second part of the sequential fold, exactly.
TEST(EnteringState, EveryAlgorithmMatchesTheFold) {
  MpiCommunicator comm;
  const int P = comm.size();
  for (const SummaryKind* kind : {&diagonal_summary(), &matrix_summary()})
    for (bool reverse : {false, true})
      for (ExchangeAlgo algo : {ExchangeAlgo::kTree, ExchangeAlgo::kAllGather, ExchangeAlgo::kRing,
                                ExchangeAlgo::kExscan, ExchangeAlgo::kAuto}) {
        if (algo == ExchangeAlgo::kExscan && !kind->elementwise()) continue;
        auto summary = [&](int r) {
          if (kind->elementwise()) {
            Summary s = summary_of_rank(r, at::kDouble);
            return SummaryParts{s.first, s.second};
          }
          return matrix_summary_of_rank(r, at::kDouble);
        };
        const int q = reverse ? P - 1 - comm.rank() : comm.rank();
        SummaryParts want = kind->identity_like(summary(0));
        for (int position = 0; position < q; ++position)
          want = kind->combine(summary(reverse ? P - 1 - position : position), want);
        const at::Tensor got = rank_entering_state(comm, *kind, summary(comm.rank()), reverse, algo);
        EXPECT_TRUE(at::equal(got, want[1]))
            << kind->name() << " " << exchange_algo_name(algo) << (reverse ? " reverse" : "")
            << " rank " << comm.rank() << "\n" << got << "\n" << want[1];
      }
}

TEST(RankScanCostModel, RingPredictionAndChoice) {
  CostModel m;
  m.tree = m.ring = m.allgather = AlgoCost{10e-6, 1.0 / 10e9};
  m.combine_s_per_byte = 0;
  const double bytes = 2.0 * (1 << 20), state = bytes / 2;
  // P - 1 hops of one state.
  EXPECT_DOUBLE_EQ(predict_exchange_seconds(ExchangeAlgo::kRing, 3, bytes, m, state),
                   2 * (10e-6 + state / 10e9));
  // Two and three ranks: as many hops as the tree has rounds, half the bytes each.
  EXPECT_LT(predict_exchange_seconds(ExchangeAlgo::kRing, 3, bytes, m, state),
            predict_exchange_seconds(ExchangeAlgo::kTree, 3, bytes, m));
  EXPECT_GT(predict_exchange_seconds(ExchangeAlgo::kRing, 1024, bytes, m, state),
            predict_exchange_seconds(ExchangeAlgo::kTree, 1024, bytes, m));
  EXPECT_EQ(parse_exchange_algo("ring"), ExchangeAlgo::kRing);
}

TEST(SummaryKinds, IdentityAdjointAndShapeChecks) {
  const SummaryKind& m = matrix_summary();
  const SummaryParts s = matrix_summary_of_rank(1, at::kDouble);
  const SummaryParts id = m.identity_like(s);
  const SummaryParts left = m.combine(id, s), right = m.combine(s, id);
  EXPECT_TRUE(at::equal(left[0], s[0]) && at::equal(left[1], s[1]));
  EXPECT_TRUE(at::equal(right[0], s[0]) && at::equal(right[1], s[1]));
  EXPECT_TRUE(at::equal(m.adjoint_transition(s[0]), s[0].transpose(-1, -2)));
  EXPECT_THROW(m.check({s[0], s[1].transpose(-1, -2)}), std::invalid_argument);
  EXPECT_THROW(diagonal_summary().check({s[0], s[1]}), std::invalid_argument);
  EXPECT_TRUE(diagonal_summary().elementwise());
  EXPECT_FALSE(m.elementwise());
}

// resolve_exchange_algo is where every caller's choice is made: an explicit algorithm is kept,
// kAuto takes SEQPAR_SP_ALGO when set, else the cost model's cheapest (never the ring when whole
// summaries are needed).
TEST(ExchangeAlgoChoice, ExplicitThenEnvironmentThenCostModel) {
  MpiCommunicator comm;
  const Summary s = summary_of_rank(comm.rank(), at::kDouble);
  const SummaryParts own{s.first, s.second};
  unsetenv("SEQPAR_SP_ALGO");
  for (ExchangeAlgo algo : {ExchangeAlgo::kTree, ExchangeAlgo::kExscan, ExchangeAlgo::kAllGather,
                            ExchangeAlgo::kRing, ExchangeAlgo::kBlelloch})
    EXPECT_EQ(resolve_exchange_algo(comm, diagonal_summary(), own, algo), algo);
  const ExchangeAlgo by_model = resolve_exchange_algo(comm, diagonal_summary(), own, ExchangeAlgo::kAuto);
  EXPECT_EQ(by_model, choose_exchange_algo(comm, diagonal_summary().exchange_size(own),
                                           ExchangeAlgo::kAuto, /*exscan_possible=*/true));
  EXPECT_NE(resolve_exchange_algo(comm, diagonal_summary(), own, ExchangeAlgo::kAuto,
                                  /*whole_summaries=*/true),
            ExchangeAlgo::kRing);
  setenv("SEQPAR_SP_ALGO", "allgather", 1);
  EXPECT_EQ(resolve_exchange_algo(comm, diagonal_summary(), own, ExchangeAlgo::kAuto),
            ExchangeAlgo::kAllGather);
  setenv("SEQPAR_SP_ALGO", "ring", 1);
  EXPECT_EQ(resolve_exchange_algo(comm, diagonal_summary(), own, ExchangeAlgo::kAuto,
                                  /*whole_summaries=*/true),
            ExchangeAlgo::kTree);
  // An explicit request beats the environment.
  EXPECT_EQ(resolve_exchange_algo(comm, diagonal_summary(), own, ExchangeAlgo::kExscan),
            ExchangeAlgo::kExscan);
  unsetenv("SEQPAR_SP_ALGO");
}

TEST(ExchangeAlgoChoice, NamesRoundTrip) {
  for (ExchangeAlgo algo : {ExchangeAlgo::kAuto, ExchangeAlgo::kTree, ExchangeAlgo::kExscan,
                            ExchangeAlgo::kAllGather, ExchangeAlgo::kRing, ExchangeAlgo::kBlelloch})
    EXPECT_EQ(parse_exchange_algo(exchange_algo_name(algo)), algo);
  EXPECT_EQ(parse_exchange_algo(""), ExchangeAlgo::kAuto);
  EXPECT_THROW(parse_exchange_algo("butterfly"), std::invalid_argument);
}

TEST(RankScanCostModel, TreeBeatsAllGatherForLargeSummariesAndManyRanks) {
  CostModel m;
  m.tree = m.exscan = m.allgather = AlgoCost{10e-6, 1.0 / 100e9};
  m.combine_s_per_byte = 1.0 / 1000e9;
  // 4096 channels x fp32 x 2 (A and B) per batch row, 8 rows: 256 KiB summaries.
  const double bytes = 2.0 * 4096 * 4 * 8;
  EXPECT_LT(predict_exchange_seconds(ExchangeAlgo::kTree, 1024, bytes, m),
            predict_exchange_seconds(ExchangeAlgo::kAllGather, 1024, bytes, m));
  EXPECT_EQ(predict_exchange_seconds(ExchangeAlgo::kTree, 1, bytes, m), 0.0);
  // Rounds grow like ceil(log2 P): 5 ranks cost the same rounds as 8.
  EXPECT_EQ(predict_exchange_seconds(ExchangeAlgo::kTree, 5, bytes, m),
            predict_exchange_seconds(ExchangeAlgo::kTree, 8, bytes, m));
}

}  // namespace
}  // namespace seqpar::comm
