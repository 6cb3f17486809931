// Packed sequences (cu_seqlens) across ranks on the MPI backend: seqpar::sp::scan,
// chunk_gla and chunk_gated_delta_rule against the one-process packed ops over the whole pack
// (themselves checked against per-sequence float64 references in
// tests/python/test_packed_sequences.py). Sequences of random lengths, empty ones included,
// cross the ranks' uneven slices (rank 1 holds none); every exchange algorithm, MPI_Exscan
// included for the scan; values, all N final states and the gradients of every input, the
// replicated initial states' gradients summed over ranks.
#include <gtest/gtest.h>
#include <mpi.h>
#include <torch/torch.h>

#include "seqpar/comm/mpi_communicator.h"
#include "seqpar/matrix_state.h"
#include "seqpar/scan.h"
#include "seqpar/sp.h"

namespace seqpar::sp {
namespace {

enum class Model { kScan, kGla, kGatedDelta };
struct PackedCase {
  Model model;
  ExchangeAlgo algo;
};

class SpPacked : public testing::TestWithParam<PackedCase> {};

TEST_P(SpPacked, MatchesOneProcess) {
  const PackedCase c = GetParam();
  auto group = std::make_shared<comm::MpiCommunicator>();
  const int P = group->size(), r = group->rank();
  std::vector<int64_t> len(P);
  for (int i = 0; i < P; ++i) len[i] = i == 1 ? 0 : 4 + (7 * i + 3) % 9;
  int64_t start = 0, total = 0;
  for (int i = 0; i < P; ++i) (i < r ? start : total) += len[i];
  total += start;
  // The same pack on every rank: lengths 0..6, an empty sequence first and last.
  torch::manual_seed(7);
  std::vector<int64_t> cu{0, 0};
  while (cu.back() < total) cu.push_back(std::min(total, cu.back() + torch::randint(0, 7, {1}).item<int64_t>()));
  cu.push_back(total);
  const int64_t N = static_cast<int64_t>(cu.size()) - 1;
  const at::Tensor cu_t = torch::tensor(cu, torch::kLong);
  const auto f64 = torch::kFloat64;
  const int64_t H = 2, K = 4, V = 3, chunk = 4;
  std::vector<at::Tensor> full;
  at::Tensor init;
  if (c.model == Model::kScan) {
    full = {0.5 + 0.5 * torch::rand({1, total, 3}, f64), torch::randn({1, total, 3}, f64)};
    init = torch::randn({N, 3}, f64);
  } else {
    full = {torch::randn({1, total, H, K}, f64),
            torch::nn::functional::normalize(torch::randn({1, total, H, K}, f64),
                                             torch::nn::functional::NormalizeFuncOptions().dim(-1)),
            torch::randn({1, total, H, V}, f64),
            c.model == Model::kGla ? -torch::rand({1, total, H, K}, f64)
                                   : -torch::rand({1, total, H}, f64)};
    if (c.model == Model::kGatedDelta) full.push_back(torch::rand({1, total, H}, f64));
    init = torch::randn({N, H, K, V}, f64);
  }
  const at::Tensor w = torch::randn_like(c.model == Model::kScan ? full[0] : full[2]);
  const at::Tensor u = torch::randn_like(init);
  auto run = [&](const std::vector<at::Tensor>& x, const at::Tensor& s0, bool sp) {
    const SpOptions o{c.algo};
    switch (c.model) {
      case Model::kScan: {
        if (sp) return scan(x[0], x[1], s0, false, group, o, cu_t);
        ScanOptions so;
        so.cu_seqlens = cu_t;
        return seqpar::scan(x[0], x[1], s0, so);
      }
      case Model::kGla:
        return sp ? chunk_gla(x[0], x[1], x[2], x[3], std::nullopt, s0, chunk, group, o, cu_t)
                  : seqpar::chunk_gla(x[0], x[1], x[2], x[3], std::nullopt, s0, chunk, cu_t);
      default:
        return sp ? chunk_gated_delta_rule(x[0], x[1], x[2], x[3], x[4], std::nullopt, s0, chunk,
                                           group, o, cu_t)
                  : seqpar::chunk_gated_delta_rule(x[0], x[1], x[2], x[3], x[4], std::nullopt,
                                                   s0, chunk, cu_t);
    }
  };
  std::vector<at::Tensor> mine;
  for (auto& t : full) {
    mine.push_back(t.slice(1, start, start + len[r]).clone().requires_grad_());
    t.requires_grad_();
  }
  auto init_full = init.clone().requires_grad_(), init_mine = init.clone().requires_grad_();
  auto [o_ref, S_ref] = run(full, init_full, false);
  ((o_ref * w).sum() + P * (S_ref * u).sum()).backward();
  auto [o, S] = run(mine, init_mine, true);
  ((o * w.slice(1, start, start + len[r])).sum() + (S * u).sum()).backward();

  auto close = [&](at::Tensor got, const at::Tensor& want, const std::string& what) {
    if (!got.defined()) got = torch::zeros_like(want);
    if (want.numel() == 0) return;
    EXPECT_TRUE(torch::allclose(got, want, 1e-9, 1e-9))
        << what << " on rank " << r << " of " << P << ": max diff "
        << (got - want).abs().max().item<double>();
  };
  close(o, o_ref.slice(1, start, start + len[r]), "outputs");
  close(S, S_ref, "final states");
  for (size_t i = 0; i < mine.size(); ++i)
    close(mine[i].grad(), full[i].grad().slice(1, start, start + len[r]), "grad input " + std::to_string(i));
  at::Tensor g0 = init_mine.grad().defined() ? init_mine.grad().contiguous().clone()
                                             : torch::zeros_like(init);
  MPI_Allreduce(MPI_IN_PLACE, g0.data_ptr<double>(), static_cast<int>(g0.numel()), MPI_DOUBLE,
                MPI_SUM, MPI_COMM_WORLD);
  close(g0, init_full.grad(), "grad initial states (summed over ranks)");
}

std::vector<PackedCase> packed_cases() {
  std::vector<PackedCase> cases;
  for (Model m : {Model::kScan, Model::kGla, Model::kGatedDelta})
    for (ExchangeAlgo algo : {ExchangeAlgo::kAuto, ExchangeAlgo::kTree, ExchangeAlgo::kAllGather,
                              ExchangeAlgo::kRing, ExchangeAlgo::kBlelloch})
      cases.push_back({m, algo});
  cases.push_back({Model::kScan, ExchangeAlgo::kExscan});
  return cases;
}

std::string packed_case_name(const testing::TestParamInfo<PackedCase>& info) {
  static const char* const kModel[] = {"scan", "gla", "gated_deltanet"};
  return std::string(kModel[static_cast<int>(info.param.model)]) + "_" +
         comm::exchange_algo_name(info.param.algo);
}

INSTANTIATE_TEST_SUITE_P(Models, SpPacked, testing::ValuesIn(packed_cases()), packed_case_name);

}  // namespace
}  // namespace seqpar::sp
