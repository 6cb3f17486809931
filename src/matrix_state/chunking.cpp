// See chunking.h.
#include "matrix_state/chunking.h"

#include <c10/util/Exception.h>

namespace seqpar::matrix_state {
namespace {

bool supported_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kBFloat16 || t == at::kHalf;
}

void check_same_device(const char* op, const char* name, const at::Tensor& t,
                       const at::Tensor& q) {
  TORCH_CHECK(t.device() == q.device(), op, ": argument '", name, "' is on ", t.device(),
              " but 'q' is on ", q.device(), "; expected the same device");
}

}  // namespace

at::ScalarType compute_dtype(at::ScalarType input) {
  return input == at::kDouble ? at::kDouble : at::kFloat;
}

Dims check_qkv(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
               int64_t chunk_size) {
  for (auto [name, t] : {std::pair<const char*, const at::Tensor*>{"q", &q}, {"k", &k}, {"v", &v}}) {
    TORCH_CHECK(t->defined(), op, ": argument '", name, "' is undefined");
    TORCH_CHECK(t->dim() == 4, op, ": argument '", name,
                "' must be 4-d (batch, time, heads, dim), got shape ", t->sizes());
  }
  TORCH_CHECK(supported_dtype(q.scalar_type()), op, ": argument 'q' has dtype ",
              q.scalar_type(), "; expected float32, float64, bfloat16 or float16");
  TORCH_CHECK(k.sizes() == q.sizes(), op, ": argument 'k' must have the shape of 'q' ",
              q.sizes(), ", got ", k.sizes());
  TORCH_CHECK(v.size(0) == q.size(0) && v.size(1) == q.size(1) && v.size(2) == q.size(2), op,
              ": argument 'v' must be (batch, time, heads, V) with the batch, time and heads of "
              "'q' ",
              q.sizes(), ", got ", v.sizes());
  for (auto [name, t] : {std::pair<const char*, const at::Tensor*>{"k", &k}, {"v", &v}}) {
    TORCH_CHECK(t->scalar_type() == q.scalar_type(), op, ": argument '", name,
                "' must have the dtype of 'q' (", q.scalar_type(), "), got ", t->scalar_type());
    check_same_device(op, name, *t, q);
  }
  TORCH_CHECK(chunk_size > 0, op, ": argument 'chunk_size' must be positive, got ", chunk_size);
  Dims d{q.size(0), q.size(1), q.size(2), q.size(3), v.size(3), chunk_size, 0};
  d.N = (d.T + d.C - 1) / d.C;
  return d;
}

void check_per_step(const char* op, const char* name, const at::Tensor& t, const at::Tensor& q,
                    const Dims& d, std::optional<int64_t> trailing) {
  TORCH_CHECK(t.defined(), op, ": argument '", name, "' is undefined");
  std::vector<int64_t> want{d.B, d.T, d.H};
  if (trailing) want.push_back(*trailing);
  TORCH_CHECK(t.sizes() == at::IntArrayRef(want), op, ": argument '", name, "' must have shape ",
              trailing ? "(batch, time, heads, K) = " : "(batch, time, heads) = ",
              at::IntArrayRef(want), ", got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == q.scalar_type(), op, ": argument '", name,
              "' must have the dtype of 'q' (", q.scalar_type(), "), got ", t.scalar_type());
  check_same_device(op, name, t, q);
}

void check_state(const char* op, const at::Tensor& state, const at::Tensor& q, const Dims& d,
                 const std::optional<at::Tensor>& cu_seqlens) {
  const std::vector<int64_t> want{cu_seqlens ? cu_seqlens->size(0) - 1 : d.B, d.H, d.K, d.V};
  TORCH_CHECK(state.sizes() == at::IntArrayRef(want), op, ": argument 'initial_state' must have ",
              "shape ", cu_seqlens ? "(sequences of 'cu_seqlens', " : "(batch, ",
              "heads, K, V) = ", at::IntArrayRef(want), ", got ", state.sizes());
  TORCH_CHECK(supported_dtype(state.scalar_type()), op, ": argument 'initial_state' has dtype ",
              state.scalar_type(), "; expected a floating dtype (float32, or float64 for checks)");
  check_same_device(op, "initial_state", state, q);
}

at::Tensor to_chunks(const at::Tensor& x, const Dims& d, at::ScalarType dtype) {
  at::Tensor t = x.to(dtype).permute({0, 2, 1, 3});  // (B, H, T, X)
  const int64_t pad = d.N * d.C - d.T;
  if (pad > 0) t = at::constant_pad_nd(t, {0, 0, 0, pad}, 0.0);
  return t.reshape({d.B, d.H, d.N, d.C, x.size(3)});
}

at::Tensor to_chunks_per_head(const at::Tensor& x, const Dims& d, at::ScalarType dtype) {
  return to_chunks(x.unsqueeze(-1), d, dtype).squeeze(-1);
}

at::Tensor from_chunks(const at::Tensor& x, const Dims& d, at::ScalarType dtype) {
  return x.reshape({d.B, d.H, d.N * d.C, x.size(-1)})
      .narrow(2, 0, d.T)
      .permute({0, 2, 1, 3})
      .to(dtype)
      .contiguous();
}

at::Tensor initial_state_or_zeros(const std::optional<at::Tensor>& initial_state,
                                  const at::Tensor& q, const Dims& d, at::ScalarType dtype) {
  if (initial_state && initial_state->defined()) return initial_state->to(dtype);
  return at::zeros({d.B, d.H, d.K, d.V}, q.options().dtype(dtype));
}

std::tuple<at::Tensor, at::Tensor> run_per_sequence(const at::Tensor& cu_seqlens,
                                                    const std::vector<at::Tensor>& steps,
                                                    const std::optional<at::Tensor>& initial_state,
                                                    const SequenceRun& run) {
  const int64_t* c = cu_seqlens.data_ptr<int64_t>();
  const int64_t n = cu_seqlens.size(0) - 1;
  const bool has_init = initial_state && initial_state->defined();
  std::vector<at::Tensor> outs, finals;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<at::Tensor> slice;
    for (const at::Tensor& x : steps) slice.push_back(x.narrow(1, c[i], c[i + 1] - c[i]));
    auto [o, f] = run(slice, has_init ? std::optional<at::Tensor>(initial_state->narrow(0, i, 1))
                                      : std::nullopt);
    outs.push_back(o);
    finals.push_back(f);
  }
  if (n == 0) {
    auto [o, f] = run(steps, std::nullopt);  // no steps: the shapes, with no sequence
    return {o, f.narrow(0, 0, 0)};
  }
  return {at::cat(outs, 1), at::cat(finals, 0)};
}

}  // namespace seqpar::matrix_state
