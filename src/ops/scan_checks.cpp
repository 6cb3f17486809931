// See scan_checks.h.
#include "ops/scan_checks.h"

#include <c10/util/Exception.h>

namespace seqpar::ops {
namespace {

bool supported_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kBFloat16 || t == at::kHalf ||
         t == at::kComplexFloat;
}

const char* kSupported = "float32, float64, bfloat16, float16 or complex64";

}  // namespace

void check_like(const char* op, const char* name, const at::Tensor& t, const char* ref_name,
                const at::Tensor& ref) {
  TORCH_CHECK(t.defined(), op, ": argument '", name, "' is undefined");
  TORCH_CHECK(t.sizes() == ref.sizes(), op, ": argument '", name, "' must have the shape of '",
              ref_name, "' ", ref.sizes(), ", got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": argument '", name,
              "' must have the dtype of '", ref_name, "' (", ref.scalar_type(), "), got ",
              t.scalar_type());
  TORCH_CHECK(t.device() == ref.device(), op, ": argument '", name, "' is on ", t.device(),
              " but '", ref_name, "' is on ", ref.device(), "; expected the same device");
}

void check_state_like(const char* op, const char* name, const at::Tensor& t,
                      const char* ref_name, const at::Tensor& ref,
                      const std::optional<at::Tensor>& cu_seqlens) {
  std::vector<int64_t> expected{cu_seqlens ? cu_seqlens->size(0) - 1 : ref.size(0)};
  for (int64_t d = 2; d < ref.dim(); ++d) expected.push_back(ref.size(d));
  TORCH_CHECK(t.sizes() == at::IntArrayRef(expected), op, ": argument '", name,
              "' must have shape ", cu_seqlens ? "(sequences of 'cu_seqlens', " : "(batch, ",
              "*channels) = ", at::IntArrayRef(expected), " to match '", ref_name,
              "' of shape ", ref.sizes(), ", got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": argument '", name,
              "' must have the dtype of '", ref_name, "' (", ref.scalar_type(), "), got ",
              t.scalar_type());
  TORCH_CHECK(t.device() == ref.device(), op, ": argument '", name, "' is on ", t.device(),
              " but '", ref_name, "' is on ", ref.device(), "; expected the same device");
}

void check_scan_inputs(const char* op, const at::Tensor& a, const at::Tensor& b,
                       const std::optional<at::Tensor>& h0,
                       const std::optional<at::Tensor>& cu_seqlens) {
  TORCH_CHECK(a.defined(), op, ": argument 'a' is undefined");
  TORCH_CHECK(b.defined(), op, ": argument 'b' is undefined");
  TORCH_CHECK(a.dim() >= 2, op, ": argument 'a' must have at least 2 dims (batch, time, ",
              "*channels), got shape ", a.sizes());
  TORCH_CHECK(supported_dtype(a.scalar_type()), op, ": argument 'a' has dtype ",
              a.scalar_type(), "; expected ", kSupported);
  check_like(op, "b", b, "a", a);
  if (h0.has_value() && h0->defined()) check_state_like(op, "h0", *h0, "a", a, cu_seqlens);
}

}  // namespace seqpar::ops
