// seqpar::sp::chunk_gla and chunk_gated_delta_rule on the MPI backend against one process
// running the local op over the whole sequence (itself checked against a per-step float64
// recurrence in tests/python/test_matrix_state.py). Every rank builds the same problem from a
// fixed seed and takes its slice (uneven, some empty, not multiples of the chunk); every
// exchange algorithm; outputs, the global final state and the gradients of every input, with
// the global loss sum_r [<o_r, w_r> + <S_T, u>] (the replicated final state's gradient summed
// over ranks), whose single-process form counts <S_T, u> P times.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "seqpar/comm/mpi_communicator.h"
#include "seqpar/matrix_state.h"
#include "seqpar/sp.h"

namespace seqpar::sp {
namespace {

struct MatrixCase {
  bool gla;
  ExchangeAlgo algo;
};

class SpMatrixState : public testing::TestWithParam<MatrixCase> {};

TEST_P(SpMatrixState, MatchesOneProcess) {
  const MatrixCase c = GetParam();
  auto group = std::make_shared<comm::MpiCommunicator>();
  const int P = group->size(), r = group->rank();
  std::vector<int64_t> len(P);
  for (int i = 0; i < P; ++i) len[i] = i == 1 ? 0 : 5 + (7 * i + 3) % 11;  // rank 1 empty
  int64_t start = 0, total = 0;
  for (int i = 0; i < P; ++i) (i < r ? start : total) += len[i];
  total += start;
  torch::manual_seed(42);
  const auto f64 = torch::kFloat64;
  const int64_t B = 2, H = 2, K = 4, V = 3, chunk = 4;
  auto q = torch::randn({B, total, H, K}, f64), v = torch::randn({B, total, H, V}, f64);
  auto k = torch::nn::functional::normalize(torch::randn({B, total, H, K}, f64),
                                            torch::nn::functional::NormalizeFuncOptions().dim(-1));
  auto g = c.gla ? -torch::rand({B, total, H, K}, f64) : -torch::rand({B, total, H}, f64);
  auto beta = torch::rand({B, total, H}, f64);
  auto h0 = torch::randn({B, H, K, V}, f64);
  auto w = torch::randn({B, total, H, V}, f64), u = torch::randn({B, H, K, V}, f64);
  auto run = [&](std::vector<at::Tensor> x, const at::Tensor& s0, bool sp) {
    if (c.gla) {
      return sp ? chunk_gla(x[0], x[1], x[2], x[3], std::nullopt, s0, chunk, group, {c.algo})
                : seqpar::chunk_gla(x[0], x[1], x[2], x[3], std::nullopt, s0, chunk);
    }
    return sp ? chunk_gated_delta_rule(x[0], x[1], x[2], x[3], x[4], std::nullopt, s0, chunk,
                                       group, {c.algo})
              : seqpar::chunk_gated_delta_rule(x[0], x[1], x[2], x[3], x[4], std::nullopt, s0,
                                               chunk);
  };
  std::vector<at::Tensor> full{q, k, v, g, beta}, mine;
  for (auto& t : full) {
    mine.push_back(t.slice(1, start, start + len[r]).clone().requires_grad_());
    t.requires_grad_();
  }
  auto h0_full = h0.clone().requires_grad_(), h0_mine = h0.clone().requires_grad_();
  auto [o_ref, S_ref] = run(full, h0_full, false);
  ((o_ref * w).sum() + P * (S_ref * u).sum()).backward();
  auto [o, S] = run(mine, h0_mine, true);
  ((o * w.slice(1, start, start + len[r])).sum() + (S * u).sum()).backward();

  auto close = [&](at::Tensor got, const at::Tensor& want, const char* what) {
    if (!got.defined()) got = torch::zeros_like(want);  // an empty slice's q reaches no output
    if (want.numel() == 0) return;
    EXPECT_TRUE(torch::allclose(got, want, 1e-9, 1e-9))
        << what << " on rank " << r << " of " << P << ": max diff "
        << (got - want).abs().max().item<double>();
  };
  close(o, o_ref.slice(1, start, start + len[r]), "o");
  close(S, S_ref, "final state");
  const char* names[] = {"q", "k", "v", "g", "beta"};
  for (int i = 0; i < (c.gla ? 4 : 5); ++i)
    close(mine[i].grad(), full[i].grad().slice(1, start, start + len[r]), names[i]);
  if (r == 0) {
    close(h0_mine.grad(), h0_full.grad(), "initial_state");
  } else {
    EXPECT_FALSE(h0_mine.grad().defined() && h0_mine.grad().abs().max().item<double>() > 0);
  }
}

std::vector<MatrixCase> matrix_cases() {
  std::vector<MatrixCase> cases;
  for (bool gla : {true, false})
    for (ExchangeAlgo algo : {ExchangeAlgo::kAuto, ExchangeAlgo::kTree, ExchangeAlgo::kAllGather,
                              ExchangeAlgo::kRing})
      cases.push_back({gla, algo});
  return cases;
}

std::string matrix_case_name(const testing::TestParamInfo<MatrixCase>& info) {
  static const char* const kAlgo[] = {"auto", "tree", "exscan", "allgather", "ring"};
  return std::string(info.param.gla ? "gla_" : "gated_deltanet_") +
         kAlgo[static_cast<int>(info.param.algo)];
}

INSTANTIATE_TEST_SUITE_P(Models, SpMatrixState, testing::ValuesIn(matrix_cases()),
                         matrix_case_name);

}  // namespace
}  // namespace seqpar::sp
