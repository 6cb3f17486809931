// seqpar::psm::sp_static_scan on the MPI backend against one process's static_scan of the
// whole sequence (itself checked against the textbook Blelloch scan in tests/cpp/test_psm.cpp),
// with a learned Agg that is not associative: the prefixes, the gradients of every rank's
// chunks and of Agg's parameters (summed over ranks) match for every layout the tree allows
// (full blocks with a shorter last rank, trailing empty ranks, one chunk per rank), and a
// layout it cannot align throws on every rank, naming the counts.
#include <gtest/gtest.h>
#include <seqpar/psm.h>
#include <torch/torch.h>

#include "seqpar/comm/mpi_communicator.h"
#include "seqpar/comm/rank_scan.h"

namespace seqpar::psm {
namespace {

struct Mixer {
  torch::Tensor w1, w2;
  Mixer() {
    auto g = torch::arange(16, torch::kDouble).view({4, 4});
    w1 = (torch::sin(g * 0.7) * 0.6).requires_grad_(true);
    w2 = (torch::cos(g * 1.3) * 0.6).requires_grad_(true);
  }
  Aggregate aggregate() const {
    auto w1_ = w1, w2_ = w2;
    return {[w1_, w2_](const torch::Tensor& l, const torch::Tensor& r) {
              return torch::tanh(torch::matmul(l, w1_) + torch::matmul(r, w2_) + 0.1);
            },
            {w1, w2}};
  }
};

// Chunks per rank for a layout: `block` on every rank before `last`, `tail` on `last`, then none.
std::vector<int64_t> layout(int P, int64_t block, int64_t tail, int last) {
  std::vector<int64_t> n(P, 0);
  for (int r = 0; r < last; ++r) n[r] = block;
  n[last] = tail;
  return n;
}

void check_layout(const std::vector<int64_t>& counts) {
  auto group = std::make_shared<comm::MpiCommunicator>();
  const int P = group->size(), r = group->rank();
  int64_t total = 0, begin = 0;
  for (int i = 0; i < P; ++i) {
    if (i < r) begin += counts[i];
    total += counts[i];
  }
  const torch::Tensor all = torch::sin(
      torch::arange(2 * total * 3 * 4, torch::kDouble).view({2, total, 3, 4}) * 0.37);
  const torch::Tensor weight = torch::cos(
      torch::arange(2 * total * 3 * 4, torch::kDouble).view({2, total, 3, 4}) * 1.7);

  // One process, the whole sequence; the loss skips the identity prefix of chunk 0.
  Mixer ref;
  torch::Tensor x_ref = all.clone().requires_grad_(true);
  const Prefixes want = static_scan(x_ref, ref.aggregate());
  if (total > 1) (want.states.narrow(1, 1, total - 1) * weight.narrow(1, 1, total - 1)).sum().backward();

  // This rank's slice.
  Mixer mine;
  torch::Tensor x = all.narrow(1, begin, counts[r]).clone().requires_grad_(true);
  const Prefixes got = sp_static_scan(x, mine.aggregate(), group);
  ASSERT_EQ(got.states.sizes(), x.sizes());
  if (counts[r] > 0) EXPECT_EQ(got.first_is_identity, r == 0);  // no flag without chunks
  torch::Tensor loss = torch::zeros({}, torch::kDouble);
  if (counts[r] > 0) {
    const int64_t skip = r == 0 ? 1 : 0;
    EXPECT_TRUE(torch::allclose(got.states.narrow(1, skip, counts[r] - skip),
                                want.states.narrow(1, begin + skip, counts[r] - skip), 1e-12, 1e-12))
        << "rank " << r;
    loss = (got.states.narrow(1, skip, counts[r] - skip) *
            weight.narrow(1, begin + skip, counts[r] - skip)).sum();
  }
  if (loss.requires_grad()) loss.backward();

  if (counts[r] > 0) {
    const torch::Tensor gx = x.grad().defined() ? x.grad() : torch::zeros_like(x);
    const torch::Tensor gx_ref = x_ref.grad().defined() ? x_ref.grad() : torch::zeros_like(all);
    EXPECT_TRUE(torch::allclose(gx, gx_ref.narrow(1, begin, counts[r]), 1e-12, 1e-12))
        << "rank " << r;
  }
  // Agg's parameters are replicated: their gradients sum over ranks.
  for (auto [w, w_ref] : {std::pair{mine.w1, ref.w1}, std::pair{mine.w2, ref.w2}}) {
    torch::Tensor g = w.grad().defined() ? w.grad().clone() : torch::zeros_like(w);
    group->all_reduce_sum(comm::mutable_buffer_of(g));
    const torch::Tensor g_ref = w_ref.grad().defined() ? w_ref.grad() : torch::zeros_like(w_ref);
    EXPECT_TRUE(torch::allclose(g, g_ref, 1e-11, 1e-11)) << "rank " << r << "\n" << g << "\n" << g_ref;
  }
}

TEST(SpPsm, FullBlocksAndAShorterLastRank) {
  comm::MpiCommunicator probe;
  check_layout(layout(probe.size(), 4, probe.size() > 1 ? 3 : 4, probe.size() - 1));
}

TEST(SpPsm, TrailingEmptyRanks) {
  comm::MpiCommunicator probe;
  const int P = probe.size();
  check_layout(layout(P, 2, 2, std::max(0, P - 2)));
}

TEST(SpPsm, OneChunkPerRank) {
  comm::MpiCommunicator probe;
  check_layout(layout(probe.size(), 1, 1, probe.size() - 1));
}

TEST(SpPsm, NoGradForwardMatches) {
  auto group = std::make_shared<comm::MpiCommunicator>();
  const int P = group->size(), r = group->rank();
  const torch::Tensor all = torch::sin(torch::arange(2 * 8 * P * 12, torch::kDouble).view({2, 8 * P, 3, 4}));
  Mixer mixer;
  torch::NoGradGuard no_grad;
  const Prefixes want = static_scan(all, mixer.aggregate());
  const Prefixes got = sp_static_scan(all.narrow(1, 8 * r, 8), mixer.aggregate(), group);
  const int64_t skip = r == 0 ? 1 : 0;
  EXPECT_TRUE(torch::allclose(got.states.narrow(1, skip, 8 - skip),
                              want.states.narrow(1, 8 * r + skip, 8 - skip), 1e-12, 1e-12));
}

TEST(SpPsm, UnalignedLayoutThrowsOnEveryRank) {
  auto group = std::make_shared<comm::MpiCommunicator>();
  if (group->size() < 2) GTEST_SKIP() << "needs two ranks";
  Mixer mixer;
  const torch::Tensor three = torch::zeros({1, 3, 3, 4}, torch::kDouble);
  try {
    sp_static_scan(three, mixer.aggregate(), group);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("chunks per rank [3, 3"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("not a power of two"), std::string::npos) << e.what();
  }
  // A partial (padded) last chunk anywhere but on the last non-empty rank.
  const torch::Tensor two = torch::zeros({1, 2, 3, 4}, torch::kDouble);
  try {
    sp_static_scan(two, mixer.aggregate(), group, /*partial_last_chunk=*/group->rank() == 0);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("rank 0's slice ends in a partial chunk"), std::string::npos)
        << e.what();
  }
  // The last rank's partial chunk is fine.
  EXPECT_NO_THROW(sp_static_scan(two, mixer.aggregate(), group,
                                 /*partial_last_chunk=*/group->rank() == group->size() - 1));
  // Rank 1 holding more than rank 0 breaks the alignment too.
  const torch::Tensor mine = torch::zeros({1, group->rank() == 1 ? 4 : 2, 3, 4}, torch::kDouble);
  EXPECT_THROW(sp_static_scan(mine, mixer.aggregate(), group), std::invalid_argument);
}

}  // namespace
}  // namespace seqpar::psm
