// The fused chunk kernels of the matrix-state recurrences (kernels/cpu/chunk_delta_rule.cpp,
// chunk_gla.cpp) as ops and as the autograd function that chunk_gla, chunk_gated_delta_rule
// and chunk_kda use for CPU tensors:
//   matrix_chunk_forward  -> (o, final_state, chunk_states)
//   matrix_chunk_backward -> (grad_q, grad_k, grad_v, grad_g, grad_beta, grad_initial_state)
// with CPU and Meta kernels (schemas in src/ops/library.cpp). Autograd saves the inputs and the
// state entering each chunk (batch, heads, chunks, K, V) and nothing else; backward recomputes
// a chunk's products from its state, so no (chunks, C, C) or (chunks, K, K) tensor ever exists.
//
// The kernels' small matrix products go to the BLAS inside the PyTorch wheel (MKL on x86-64,
// which picks its instruction set at run time; OpenBLAS on aarch64) through its Fortran
// sgemm_/dgemm_, referenced weakly: a LibTorch without them still loads, and the products then
// run in a plain loop (docs/design.md, "Dependencies").
#include <torch/autograd.h>
#include <torch/library.h>

#include <ATen/Parallel.h>

#include "matrix_state/chunk_params.h"
#include "matrix_state/chunking.h"
#include "matrix_state/fused_chunks.h"
#include "ops/kernel_params.h"
#include "ops/packed_sequences.h"
#include "seqpar/kernels/cpu_matrix_state.h"
#include "seqpar/kernels/plain_gemm.h"

extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*,
            const float*, const int*, const float*, const int*, const float*, float*,
            const int*) __attribute__((weak));
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*,
            const double*, const int*, const double*, const int*, const double*, double*,
            const int*) __attribute__((weak));
// MKL's C API (the lower-case names are its Fortran interface, taking pointers).
int MKL_Set_Num_Threads_Local(int) __attribute__((weak));
}

namespace seqpar::matrix_state {
namespace {

// Row-major C = alpha op(A) op(B) + beta C is column-major C^T = alpha op(B)^T op(A)^T + beta C^T.
// Each product is one thread's: the kernels already run one (batch, head) per worker, and MKL
// would otherwise start its own threads inside every worker (measured: forward + backward of
// gated DeltaNet at T = 2^15 took 3x as long). The caller's MKL setting is restored after.
template <class T, class Fortran>
void blas_gemm(Fortran f, bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
               int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  const char tra = ta ? 'T' : 'N', trb = tb ? 'T' : 'N';
  const int M = static_cast<int>(n), N = static_cast<int>(m), K = static_cast<int>(k);
  const int la = static_cast<int>(ldb), lb = static_cast<int>(lda), lc = static_cast<int>(ldc);
  const int previous = MKL_Set_Num_Threads_Local != nullptr ? MKL_Set_Num_Threads_Local(1) : 0;
  f(&trb, &tra, &M, &N, &K, &alpha, b, &la, a, &lb, &beta, c, &lc);
  if (MKL_Set_Num_Threads_Local != nullptr) MKL_Set_Num_Threads_Local(previous);
}

void gemm_f32(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
              int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (sgemm_ != nullptr) return blas_gemm(sgemm_, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  kernels::plain_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
void gemm_f64(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
              int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  if (dgemm_ != nullptr) return blas_gemm(dgemm_, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  kernels::plain_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

kernels::MatrixGemm blas() { return {&gemm_f32, &gemm_f64}; }

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cpu(
    c10::string_view recurrence, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& g, const std::optional<at::Tensor>& beta, double scale,
    const std::optional<at::Tensor>& initial_state, int64_t chunk_size,
    const std::optional<at::Tensor>& cu_seqlens) {
  PreparedChunkForward r = prepare_chunk_forward(recurrence, q, k, v, g, beta, scale,
                                                 initial_state, chunk_size, cu_seqlens);
  r.params.gemm = blas();
  r.params.num_threads = at::get_num_threads();
  kernels::cpu::matrix_chunk_forward(r.params);
  return {r.o, r.final_state, r.chunk_states};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_cpu(
    c10::string_view recurrence, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& g, const std::optional<at::Tensor>& beta, double scale,
    const at::Tensor& chunk_states, const std::optional<at::Tensor>& grad_o,
    const std::optional<at::Tensor>& grad_final_state, int64_t chunk_size,
    const std::optional<at::Tensor>& cu_seqlens) {
  PreparedChunkBackward r =
      prepare_chunk_backward(recurrence, q, k, v, g, beta, scale, chunk_states, grad_o,
                             grad_final_state, chunk_size, cu_seqlens);
  r.params.gemm = blas();
  r.params.num_threads = at::get_num_threads();
  kernels::cpu::matrix_chunk_backward(r.params);
  return {r.gq, r.gk, r.gv, r.gg, r.gb, r.g_init};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_meta(
    c10::string_view, const at::Tensor& q, const at::Tensor&, const at::Tensor& v,
    const at::Tensor&, const std::optional<at::Tensor>&, double, const std::optional<at::Tensor>&,
    int64_t chunk_size, const std::optional<at::Tensor>& cu_seqlens) {
  const auto state_opts = q.options().dtype(compute_dtype(q.scalar_type()));
  return {at::empty({q.size(0), q.size(1), q.size(2), v.size(3)}, v.options()),
          at::empty(chunk_final_state_shape(q, v, chunk_size, cu_seqlens), state_opts),
          at::empty(chunk_states_shape(q, v, chunk_size, cu_seqlens), state_opts)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_meta(
    c10::string_view, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& g, const std::optional<at::Tensor>& beta, double,
    const at::Tensor& chunk_states, const std::optional<at::Tensor>&,
    const std::optional<at::Tensor>&, int64_t chunk_size,
    const std::optional<at::Tensor>& cu_seqlens) {
  return {at::empty_like(q), at::empty_like(k), at::empty_like(v), at::empty_like(g),
          beta ? at::empty_like(*beta) : at::empty({0}, q.options()),
          at::empty(chunk_final_state_shape(q, v, chunk_size, cu_seqlens), chunk_states.options())};
}

using ForwardSig = std::tuple<at::Tensor, at::Tensor, at::Tensor>(
    c10::string_view, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    const std::optional<at::Tensor>&, double, const std::optional<at::Tensor>&, int64_t,
    const std::optional<at::Tensor>&);
using BackwardSig = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
    c10::string_view, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    const std::optional<at::Tensor>&, double, const at::Tensor&, const std::optional<at::Tensor>&,
    const std::optional<at::Tensor>&, int64_t, const std::optional<at::Tensor>&);

const c10::TypedOperatorHandle<ForwardSig>& forward_op() {
  static const auto h = c10::Dispatcher::singleton()
                            .findSchemaOrThrow("seqpar::matrix_chunk_forward", "")
                            .typed<ForwardSig>();
  return h;
}
const c10::TypedOperatorHandle<BackwardSig>& backward_op() {
  static const auto h = c10::Dispatcher::singleton()
                            .findSchemaOrThrow("seqpar::matrix_chunk_backward", "")
                            .typed<BackwardSig>();
  return h;
}

std::optional<at::Tensor> defined(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

// Autograd over the two ops. beta and initial_state are optional: an undefined tensor cannot be
// an autograd input, an absent one comes as nullopt.
class FusedChunkFunction : public torch::autograd::Function<FusedChunkFunction> {
 public:
  static torch::autograd::variable_list forward(
      torch::autograd::AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
      const at::Tensor& v, const at::Tensor& g, const std::optional<at::Tensor>& beta,
      const std::optional<at::Tensor>& initial_state, std::string recurrence, double scale,
      int64_t chunk_size, const std::optional<at::Tensor>& cu_seqlens) {
    auto [o, final_state, chunk_states] = forward_op().call(recurrence, q, k, v, g, beta, scale,
                                                            initial_state, chunk_size, cu_seqlens);
    ctx->save_for_backward({q, k, v, g, beta.value_or(at::Tensor()), chunk_states,
                            cu_seqlens.value_or(at::Tensor())});
    ctx->saved_data["recurrence"] = recurrence;
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["chunk_size"] = chunk_size;
    ctx->saved_data["has_initial"] = initial_state.has_value();
    ctx->saved_data["initial_dtype"] =
        static_cast<int64_t>(initial_state ? initial_state->scalar_type() : at::kFloat);
    return {o, final_state};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const std::string recurrence = ctx->saved_data["recurrence"].toStringRef();
    auto [gq, gk, gv, gg, gb, g_init] = backward_op().call(
        recurrence, saved[0], saved[1], saved[2], saved[3], defined(saved[4]),
        ctx->saved_data["scale"].toDouble(), saved[5], defined(grads[0]), defined(grads[1]),
        ctx->saved_data["chunk_size"].toInt(), defined(saved[6]));
    const auto init_dtype = static_cast<at::ScalarType>(ctx->saved_data["initial_dtype"].toInt());
    return {gq, gk, gv, gg, saved[4].defined() ? gb : at::Tensor(),
            ctx->saved_data["has_initial"].toBool() ? g_init.to(init_dtype) : at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

bool use_fused_chunks(const at::Tensor& q) { return q.device().is_cpu() || q.is_meta(); }

bool use_fused_chunks(const char* recurrence, const at::Tensor& q, const at::Tensor& v,
                      int64_t chunk_size) {
  if (use_fused_chunks(q)) return true;
#ifdef SEQPAR_WITH_CUDA
  if (q.is_cuda()) return cuda_fused_chunks_supported(recurrence, q, v, chunk_size);
#else
  (void)recurrence, (void)v, (void)chunk_size;
#endif
  return false;
}

std::tuple<at::Tensor, at::Tensor> fused_chunk_recurrence(
    const char* recurrence, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& g, const at::Tensor& beta, double scale,
    const std::optional<at::Tensor>& initial_state, int64_t chunk_size,
    const std::optional<at::Tensor>& cu_seqlens) {
  auto out = FusedChunkFunction::apply(
      q, k, v, g, defined(beta),
      initial_state && initial_state->defined() ? initial_state : std::nullopt,
      std::string(recurrence), scale, chunk_size, cu_seqlens);
  return {out[0], out[1]};
}

}  // namespace seqpar::matrix_state

TORCH_LIBRARY_IMPL(seqpar, CPU, m) {
  m.impl("matrix_chunk_forward", &seqpar::matrix_state::forward_cpu);
  m.impl("matrix_chunk_backward", &seqpar::matrix_state::backward_cpu);
}

TORCH_LIBRARY_IMPL(seqpar, Meta, m) {
  m.impl("matrix_chunk_forward", &seqpar::matrix_state::forward_meta);
  m.impl("matrix_chunk_backward", &seqpar::matrix_state::backward_meta);
}
