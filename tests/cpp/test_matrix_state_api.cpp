// The C++ API of seqpar/matrix_state.h from a LibTorch program: both models against a per-step
// float64 loop written here (independent of the Python reference), autograd from C++, and an
// error naming the argument.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "seqpar/matrix_state.h"

namespace {

// S_t = diag(exp g_t) S_{t-1} + k_t v_t^T (beta undefined, g per key channel), or
// S_t = exp(g_t) (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T; o_t = scale S_t^T q_t.
std::tuple<at::Tensor, at::Tensor> loop(const at::Tensor& q, const at::Tensor& k,
                                        const at::Tensor& v, const at::Tensor& g,
                                        const at::Tensor& beta, double scale, at::Tensor S) {
  std::vector<at::Tensor> out;
  for (int64_t t = 0; t < q.size(1); ++t) {
    const auto kt = k.select(1, t).unsqueeze(-1), vt = v.select(1, t).unsqueeze(-2);  // (B,H,K,1), (B,H,1,V)
    if (!beta.defined()) {
      S = g.select(1, t).exp().unsqueeze(-1) * S + kt * vt;
    } else {
      const auto bt = beta.select(1, t).unsqueeze(-1).unsqueeze(-1);
      const auto kS = torch::matmul(kt.transpose(-1, -2), S);  // (B,H,1,V)
      S = g.select(1, t).exp().unsqueeze(-1).unsqueeze(-1) * (S - bt * kt * kS) + bt * kt * vt;
    }
    out.push_back(scale * torch::matmul(S.transpose(-1, -2), q.select(1, t).unsqueeze(-1)).squeeze(-1));
  }
  return {torch::stack(out, 1), S};
}

TEST(MatrixStateApi, BothModelsMatchLoop) {
  torch::manual_seed(0);
  const auto f64 = torch::kFloat64;
  const int64_t B = 2, T = 77, H = 3, K = 6, V = 4;
  auto q = torch::randn({B, T, H, K}, f64);
  auto k = torch::nn::functional::normalize(torch::randn({B, T, H, K}, f64),
                                            torch::nn::functional::NormalizeFuncOptions().dim(-1));
  auto v = torch::randn({B, T, H, V}, f64);
  auto S0 = torch::randn({B, H, K, V}, f64);
  auto g_gla = -torch::rand({B, T, H, K}, f64);
  auto g = -torch::rand({B, T, H}, f64);
  auto beta = torch::rand({B, T, H}, f64);
  {
    auto [o, S] = seqpar::chunk_gla(q, k, v, g_gla, 0.5, S0, 16);
    auto [ro, rS] = loop(q, k, v, g_gla, at::Tensor(), 0.5, S0);
    EXPECT_TRUE(torch::allclose(o, ro, 1e-12, 1e-12));
    EXPECT_TRUE(torch::allclose(S, rS, 1e-12, 1e-12));
  }
  {
    auto [o, S] = seqpar::chunk_gated_delta_rule(q, k, v, g, beta, std::nullopt, S0, 32);
    auto [ro, rS] = loop(q, k, v, g, beta, 1.0 / std::sqrt(double(K)), S0);
    EXPECT_TRUE(torch::allclose(o, ro, 1e-12, 1e-12));
    EXPECT_TRUE(torch::allclose(S, rS, 1e-12, 1e-12));
  }
}

TEST(MatrixStateApi, AutogradFromCpp) {
  torch::manual_seed(1);
  const auto f64 = torch::kFloat64;
  auto q = torch::randn({1, 40, 2, 4}, f64).requires_grad_();
  auto k = torch::randn({1, 40, 2, 4}, f64).mul(0.5).requires_grad_();
  auto v = torch::randn({1, 40, 2, 3}, f64).requires_grad_();
  auto g = (-torch::rand({1, 40, 2}, f64)).requires_grad_();
  auto beta = torch::rand({1, 40, 2}, f64).requires_grad_();
  auto [o, S] = seqpar::chunk_gated_delta_rule(q, k, v, g, beta);
  (o.sum() + S.sum()).backward();
  auto [ro, rS] = loop(q, k, v, g, beta, 0.5, torch::zeros({1, 2, 4, 3}, f64));
  auto grads = torch::autograd::grad({ro.sum() + rS.sum()}, {q, k, v, g, beta});
  const at::Tensor got[] = {q.grad(), k.grad(), v.grad(), g.grad(), beta.grad()};
  for (size_t i = 0; i < grads.size(); ++i) EXPECT_TRUE(torch::allclose(got[i], grads[i], 1e-10, 1e-10)) << i;
}

TEST(MatrixStateApi, ErrorNamesArgument) {
  auto q = torch::randn({1, 8, 2, 4});
  try {
    seqpar::chunk_gla(q, q, q, q.select(3, 0));
    FAIL() << "no error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("argument 'g' must have shape"), std::string::npos) << e.what();
  }
}

}  // namespace
