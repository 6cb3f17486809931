// Example consumer of an installed seqpar: one find_package, one target, the scan with
// autograd. Exits non-zero when the result disagrees with a plain loop.
#include <torch/torch.h>

#include <iostream>

#include "seqpar/scan.h"

int main() {
  torch::manual_seed(0);
  auto a = (torch::rand({2, 64, 8}, torch::kFloat64) * 0.5 + 0.5).requires_grad_();
  auto b = torch::randn({2, 64, 8}, torch::kFloat64);
  auto [h, h_last] = seqpar::scan(a, b);
  h_last.sum().backward();
  auto ref = torch::zeros({2, 8}, torch::kFloat64);
  for (int64_t t = 0; t < 64; ++t) ref = a.detach().select(1, t) * ref + b.select(1, t);
  const double err = (h_last.detach() - ref).abs().max().item<double>();
  const bool ok = err < 1e-12 && a.grad().defined();
  std::cout << "seqpar consumer: h_last error " << err << (ok ? " ok" : " FAILED") << "\n";
  return ok ? 0 : 1;
}
