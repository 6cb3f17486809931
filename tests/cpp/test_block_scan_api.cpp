// The C++ API of seqpar/block_scan.h from a LibTorch program: values and the summary against a
// float64 loop over 2x2 blocks, autograd through the fused backward, lower_triangular, and
// c10::Error messages naming the argument.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "seqpar/block_scan.h"

namespace {

std::tuple<at::Tensor, at::Tensor> loop_block_scan(const at::Tensor& A, const at::Tensor& b,
                                                   const at::Tensor& h0, bool reverse) {
  at::Tensor h = h0;
  std::vector<at::Tensor> out(b.size(1));
  for (int64_t i = 0; i < b.size(1); ++i) {
    const int64_t t = reverse ? b.size(1) - 1 - i : i;
    h = torch::matmul(A.select(1, t), h.unsqueeze(-1)).squeeze(-1) + b.select(1, t);
    out[t] = h;
  }
  return {torch::stack(out, 1), h};
}

TEST(BlockScanApi, ForwardAndSummaryMatchLoop) {
  torch::manual_seed(0);
  for (bool reverse : {false, true}) {
    auto A = torch::randn({3, 101, 2, 5, 2, 2}, torch::kFloat64) * 0.45;
    auto b = torch::randn({3, 101, 2, 5, 2}, torch::kFloat64);
    auto h0 = torch::randn({3, 2, 5, 2}, torch::kFloat64);
    seqpar::BlockScanOptions opt;
    opt.reverse = reverse;
    auto [h, h_last] = seqpar::block_scan(A, b, h0, opt);
    auto [rh, rl] = loop_block_scan(A, b, h0, reverse);
    EXPECT_TRUE(torch::allclose(h, rh, 1e-12, 1e-12));
    EXPECT_TRUE(torch::allclose(h_last, rl, 1e-12, 1e-12));
    auto [M, E] = seqpar::block_scan_summary(A, b, opt);
    EXPECT_TRUE(torch::allclose(torch::matmul(M, h0.unsqueeze(-1)).squeeze(-1) + E, rl, 1e-12,
                                1e-12));
  }
}

TEST(BlockScanApi, AutogradMatchesLoop) {
  torch::manual_seed(1);
  auto A = (torch::randn({2, 60, 3, 2, 2}, torch::kFloat64) * 0.45).requires_grad_();
  auto b = torch::randn({2, 60, 3, 2}, torch::kFloat64).requires_grad_();
  auto h0 = torch::randn({2, 3, 2}, torch::kFloat64).requires_grad_();
  auto w = torch::randn({2, 60, 3, 2}, torch::kFloat64);
  auto [h, hl] = seqpar::block_scan(A, b, h0);
  auto g = torch::autograd::grad({(h * w).sum() + hl.sum()}, {A, b, h0});
  auto A2 = A.detach().requires_grad_(), b2 = b.detach().requires_grad_(),
       h02 = h0.detach().requires_grad_();
  auto [rh, rl] = loop_block_scan(A2, b2, h02, false);
  auto r = torch::autograd::grad({(rh * w).sum() + rl.sum()}, {A2, b2, h02});
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(torch::allclose(g[i], r[i], 1e-10, 1e-12)) << i;
}

TEST(BlockScanApi, LowerTriangularNeverReadsTheUpperCorner) {
  torch::manual_seed(2);
  auto A = torch::randn({1, 40, 4, 2, 2}, torch::kFloat64) * 0.45;
  A.select(-2, 0).select(-1, 1).zero_();
  auto b = torch::randn({1, 40, 4, 2}, torch::kFloat64);
  auto garbage = A.clone();
  garbage.select(-2, 0).select(-1, 1).fill_(std::nan(""));
  seqpar::BlockScanOptions opt;
  opt.lower_triangular = true;
  auto [h, hl] = seqpar::block_scan(garbage, b, std::nullopt, opt);
  auto [rh, rl] = loop_block_scan(A, b, torch::zeros({1, 4, 2}, torch::kFloat64), false);
  EXPECT_TRUE(torch::allclose(h, rh, 1e-12, 1e-12));
}

TEST(BlockScanApi, ErrorsNameTheArgument) {
  auto A = torch::randn({1, 5, 3, 2, 2});
  auto b = torch::randn({1, 5, 3, 2});
  auto expect_error = [](auto&& f, const std::string& needle) {
    try {
      f();
      ADD_FAILURE() << "no error, expected one naming " << needle;
    } catch (const c10::Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error([&] { seqpar::block_scan(A.select(-1, 0), b); }, "argument 'A'");
  expect_error([&] { seqpar::block_scan(A, b.narrow(1, 0, 4)); }, "argument 'b'");
  expect_error([&] { seqpar::block_scan(A, b, torch::zeros({1, 3})); }, "argument 'h0'");
  expect_error([&] { seqpar::block_scan(A.to(torch::kInt32), b.to(torch::kInt32)); },
               "argument 'A'");
}

}  // namespace
