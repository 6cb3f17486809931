// seqpar::sp::previous_steps on the MPI backend against slicing the whole sequence in one
// process: every rank builds the same sequence from a fixed seed and takes its slice, with
// slices shorter than the window and empty ones (so a window gathers steps from several
// earlier ranks, or reaches back into `initial`), for every exchange algorithm. The windows
// must be exact; the gradients of x and initial must equal those of the global loss
// sum_r [<before_r, w_r> + <last, u>] computed on the whole sequence (the replicated last
// window counted P times).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "seqpar/comm/mpi_communicator.h"
#include "seqpar/sp.h"

namespace seqpar::sp {
namespace {

struct WindowCase {
  int64_t width;
  bool initial;
  ExchangeAlgo algo;
};

class SpPreviousSteps : public testing::TestWithParam<WindowCase> {};

TEST_P(SpPreviousSteps, MatchesSlicingTheWholeSequence) {
  const WindowCase c = GetParam();
  auto group = std::make_shared<comm::MpiCommunicator>();
  const int P = group->size(), r = group->rank();
  const int64_t kLengths[] = {2, 0, 1, 6, 3, 0, 4, 1};
  std::vector<int64_t> len(P), start(P + 1, 0);
  for (int i = 0; i < P; ++i) len[i] = kLengths[i % 8], start[i + 1] = start[i] + len[i];
  const int64_t total = start[P], B = 2, C = 3, w = c.width;
  torch::manual_seed(11);
  const auto f64 = torch::kFloat64;
  auto x = torch::randn({B, total, C}, f64), init = torch::randn({B, w, C}, f64);
  auto wb = torch::randn({P, B, w, C}, f64), u = torch::randn({B, w, C}, f64);

  // The reference: the padded sequence [initial or zeros, x]; rank i's window is its rows
  // start_i .. start_i + w - 1, the last window its final w rows.
  auto x_full = x.clone().requires_grad_(), init_full = init.clone().requires_grad_();
  auto padded = torch::cat({c.initial ? init_full : torch::zeros_like(init), x_full}, 1);
  at::Tensor loss_ref = P * (padded.narrow(1, total, w) * u).sum();
  for (int i = 0; i < P; ++i) loss_ref = loss_ref + (padded.narrow(1, start[i], w) * wb[i]).sum();
  loss_ref.backward();

  auto x_mine = x.narrow(1, start[r], len[r]).clone().requires_grad_();
  auto init_mine = init.clone().requires_grad_();
  auto [before, last] = previous_steps(x_mine, w, c.initial ? std::optional<at::Tensor>(init_mine)
                                                            : std::nullopt,
                                       group, {c.algo});
  ((before * wb[r]).sum() + (last * u).sum()).backward();

  EXPECT_TRUE(torch::equal(before, padded.narrow(1, start[r], w).detach()))
      << "before on rank " << r << " of " << P;
  EXPECT_TRUE(torch::equal(last, padded.narrow(1, total, w).detach()))
      << "last on rank " << r << " of " << P;
  if (len[r] > 0) {
    ASSERT_TRUE(x_mine.grad().defined());
    EXPECT_TRUE(torch::allclose(x_mine.grad(), x_full.grad().narrow(1, start[r], len[r]), 1e-12,
                                1e-12))
        << "grad x on rank " << r << " of " << P;
  }
  if (c.initial) {
    const at::Tensor want = r == 0 ? init_full.grad() : torch::zeros_like(init);
    const at::Tensor got = init_mine.grad().defined() ? init_mine.grad() : torch::zeros_like(init);
    EXPECT_TRUE(torch::allclose(got, want, 1e-12, 1e-12)) << "grad initial on rank " << r;
  }
}

// 16-bit inputs travel in float32 and come back exactly.
TEST(SpPreviousStepsDtype, BFloat16IsExact) {
  auto group = std::make_shared<comm::MpiCommunicator>();
  const int P = group->size(), r = group->rank();
  const int64_t per = 2, w = 3, total = per * P;
  torch::manual_seed(12);
  auto x = torch::randn({1, total, 5}).to(torch::kBFloat16);
  auto [before, last] = previous_steps(x.narrow(1, r * per, per), w, std::nullopt, group);
  auto padded = torch::cat({torch::zeros({1, w, 5}, x.options()), x}, 1);
  EXPECT_EQ(before.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(before, padded.narrow(1, r * per, w)));
  EXPECT_TRUE(torch::equal(last, padded.narrow(1, total, w)));
}

TEST(SpPreviousStepsErrors, NameTheArgument) {
  auto group = std::make_shared<comm::MpiCommunicator>();
  auto x = torch::zeros({1, 4, 2});
  auto message = [&](auto&& call) {
    try {
      call();
    } catch (const c10::Error& e) {
      return std::string(e.what_without_backtrace());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([&] { previous_steps(x, 0, std::nullopt, group); }).find("'width'"),
            std::string::npos);
  EXPECT_NE(message([&] { previous_steps(x.select(0, 0), 2, std::nullopt, group); }).find("'x' must"),
            std::string::npos);
  if (group->rank() == 0) {
    EXPECT_NE(message([&] { previous_steps(x, 2, torch::zeros({1, 3, 2}), group); })
                  .find("'initial' must be"),
              std::string::npos);
  }
}

std::vector<WindowCase> window_cases() {
  std::vector<WindowCase> cases;
  for (int64_t width : {1, 3, 7})
    for (bool initial : {false, true})
      cases.push_back({width, initial, ExchangeAlgo::kAuto});
  for (ExchangeAlgo algo : {ExchangeAlgo::kTree, ExchangeAlgo::kAllGather, ExchangeAlgo::kRing})
    cases.push_back({3, true, algo});
  return cases;
}

std::string window_case_name(const testing::TestParamInfo<WindowCase>& info) {
  static const char* const kAlgo[] = {"auto", "tree", "exscan", "allgather", "ring"};
  return "width" + std::to_string(info.param.width) + (info.param.initial ? "_initial_" : "_") +
         kAlgo[static_cast<int>(info.param.algo)];
}

INSTANTIATE_TEST_SUITE_P(Windows, SpPreviousSteps, testing::ValuesIn(window_cases()),
                         window_case_name);

}  // namespace
}  // namespace seqpar::sp
