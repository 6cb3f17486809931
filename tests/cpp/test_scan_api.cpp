// The C++ API of seqpar/scan.h from a LibTorch program: values against an fp64 loop, autograd
// through the fused backward, the checkpoint option, and c10::Error messages naming arguments.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "seqpar/scan.h"

namespace {

std::tuple<at::Tensor, at::Tensor> loop_scan(const at::Tensor& a, const at::Tensor& b,
                                             const at::Tensor& h0, bool reverse) {
  at::Tensor h = h0;
  std::vector<at::Tensor> out(a.size(1));
  for (int64_t i = 0; i < a.size(1); ++i) {
    const int64_t t = reverse ? a.size(1) - 1 - i : i;
    h = a.select(1, t) * h + b.select(1, t);
    out[t] = h;
  }
  return {torch::stack(out, 1), h};
}

TEST(ScanApi, ForwardMatchesLoop) {
  torch::manual_seed(0);
  for (bool reverse : {false, true}) {
    auto a = torch::rand({3, 101, 2, 5}, torch::kFloat64) * 0.5 + 0.5;
    auto b = torch::randn({3, 101, 2, 5}, torch::kFloat64);
    auto h0 = torch::randn({3, 2, 5}, torch::kFloat64);
    auto [h, h_last] = seqpar::scan(a, b, h0, reverse);
    auto [rh, rl] = loop_scan(a, b, h0, reverse);
    EXPECT_TRUE(torch::allclose(h, rh, 1e-12, 1e-12));
    EXPECT_TRUE(torch::allclose(h_last, rl, 1e-12, 1e-12));
  }
}

TEST(ScanApi, AutogradMatchesLoop) {
  torch::manual_seed(1);
  for (int64_t every : {0, 7}) {
    auto a = (torch::rand({2, 50, 4}, torch::kFloat64) * 0.5 + 0.5).requires_grad_();
    auto b = torch::randn({2, 50, 4}, torch::kFloat64).requires_grad_();
    auto h0 = torch::randn({2, 4}, torch::kFloat64).requires_grad_();
    auto w = torch::randn({2, 50, 4}, torch::kFloat64);
    seqpar::ScanOptions opt;
    opt.checkpoint_every = every;
    auto [h, hl] = seqpar::scan(a, b, h0, opt);
    auto g = torch::autograd::grad({(h * w).sum() + hl.sum()}, {a, b, h0});
    auto a2 = a.detach().requires_grad_(), b2 = b.detach().requires_grad_(),
         h02 = h0.detach().requires_grad_();
    auto [rh, rl] = loop_scan(a2, b2, h02, false);
    auto r = torch::autograd::grad({(rh * w).sum() + rl.sum()}, {a2, b2, h02});
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(torch::allclose(g[i], r[i], 1e-10, 1e-12)) << i;
  }
}

// ScanOptions::deterministic selects the CUDA kernels' fixed-order mode for one call and its
// backward without touching PyTorch's global switch. On the CPU (the engine is reproducible
// for a fixed thread count either way) the results must equal the default's bitwise.
TEST(ScanApi, DeterministicOptionIsScopedToTheCall) {
  torch::manual_seed(2);
  auto a = (torch::rand({2, 3000, 5}) * 0.5 + 0.5).requires_grad_();
  auto b = torch::randn({2, 3000, 5}).requires_grad_();
  seqpar::ScanOptions det;
  det.deterministic = true;
  for (int64_t every : {0, 64}) {
    det.checkpoint_every = every;
    auto [h1, l1] = seqpar::scan(a, b, std::nullopt, det);
    auto g1 = torch::autograd::grad({h1.sum() + l1.sum()}, {a, b});
    EXPECT_FALSE(at::globalContext().deterministicAlgorithms());
    seqpar::ScanOptions plain;
    plain.checkpoint_every = every;
    auto [h2, l2] = seqpar::scan(a, b, std::nullopt, plain);
    auto g2 = torch::autograd::grad({h2.sum() + l2.sum()}, {a, b});
    EXPECT_TRUE(torch::equal(h1, h2));
    EXPECT_TRUE(torch::equal(g1[0], g2[0]) && torch::equal(g1[1], g2[1]));
  }
}

TEST(ScanApi, SummaryComposesToLastState) {
  auto a = torch::rand({2, 333, 3}, torch::kFloat64);
  auto b = torch::randn({2, 333, 3}, torch::kFloat64);
  auto h0 = torch::randn({2, 3}, torch::kFloat64);
  auto [A, B] = seqpar::scan_summary(a, b);
  auto [h, hl] = seqpar::scan(a, b, h0);
  EXPECT_TRUE(torch::allclose(A * h0 + B, hl, 1e-12, 1e-12));
}

void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing: " << needle;
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(ScanApi, ErrorsNameTheArgument) {
  auto a = torch::rand({2, 5, 3});
  expect_error([&] { seqpar::scan(a, torch::rand({2, 5, 4})); }, "argument 'b'");
  expect_error([&] { seqpar::scan(a, torch::rand({2, 5, 3}, torch::kFloat64)); },
               "argument 'b' must have the dtype");
  expect_error([&] { seqpar::scan(a.to(torch::kInt), a.to(torch::kInt)); },
               "argument 'a' has dtype Int");
  expect_error([&] { seqpar::scan(torch::rand({4}), torch::rand({4})); },
               "argument 'a' must have at least 2 dims");
  expect_error([&] { seqpar::scan(a, a, torch::rand({2, 4})); }, "argument 'h0' must have shape");
  seqpar::ScanOptions bad;
  bad.checkpoint_every = -2;
  expect_error([&] { seqpar::scan(a, a, std::nullopt, bad); }, "argument 'checkpoint_every'");
}

}  // namespace
