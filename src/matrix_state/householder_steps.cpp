// See householder_steps.h.
#include "matrix_state/householder_steps.h"

#include <c10/util/Exception.h>

namespace seqpar::matrix_state {

HouseholderSteps householder_steps(const char* op, const at::Tensor& q, const at::Tensor& k,
                                   const at::Tensor& v, const at::Tensor& g, const at::Tensor& beta,
                                   int64_t num_householder,
                                   const std::optional<at::Tensor>& cu_seqlens) {
  const int64_t n = num_householder;
  TORCH_CHECK(n >= 1, op, ": argument 'num_householder' must be >= 1, got ", n);
  TORCH_CHECK(q.dim() == 4, op, ": argument 'q' must be (batch, time, heads, K), got ",
              q.sizes());
  const int64_t B = q.size(0), T = q.size(1);
  for (const auto& [name, x] : {std::pair<const char*, const at::Tensor&>{"k", k}, {"v", v},
                                {"beta", beta}}) {
    TORCH_CHECK(x.dim() >= 2 && x.size(0) == B && x.size(1) == T * n, op, ": argument '", name,
                "' must have batch ", B, " and num_householder * time = ", n, " * ", T, " = ",
                T * n, " steps (token t's factors at rows t n .. t n + n - 1), got ", x.sizes());
  }
  HouseholderSteps s;
  // q on each token's last sub-step, zeros before it.
  s.q = at::cat({at::zeros({B, T, n - 1, q.size(2), q.size(3)}, q.options()), q.unsqueeze(2)}, 2)
            .reshape({B, T * n, q.size(2), q.size(3)});
  const int64_t HV = beta.dim() == 3 ? beta.size(2) : 1;
  if (g.defined()) {
    TORCH_CHECK(g.dim() == 3 && g.size(0) == B && g.size(1) == T, op,
                ": argument 'g' must be (batch, time, value heads) = (", B, ", ", T, ", ", HV,
                "), one log-decay per token, got ", g.sizes());
    s.g = at::cat({g.unsqueeze(2), at::zeros({B, T, n - 1, g.size(2)}, g.options())}, 2)
              .reshape({B, T * n, g.size(2)});
  } else {
    s.g = at::zeros({B, T * n, HV}, beta.options());
  }
  if (cu_seqlens && cu_seqlens->defined()) s.cu_seqlens = *cu_seqlens * n;
  return s;
}

at::Tensor token_outputs(const at::Tensor& sub_step_outputs, int64_t num_householder) {
  const auto& o = sub_step_outputs;
  const int64_t n = num_householder, T = o.size(1) / n;
  return o.reshape({o.size(0), T, n, o.size(2), o.size(3)}).select(2, n - 1);
}

}  // namespace seqpar::matrix_state
