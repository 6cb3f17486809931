// A plain-loop GEMM with the fused chunk kernels' GemmFn signature (matrix_state_params.h):
// row-major C = alpha * op(A) op(B) + beta * C. What the LibTorch side passes when the wheel's
// BLAS is missing, and what the kernels' own tests pass (they build without LibTorch).
#pragma once

#include <cstdint>

namespace seqpar::kernels {

template <class T>
void plain_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    T* ci = c + i * ldc;
    for (int64_t j = 0; j < n; ++j) ci[j] = beta == T(0) ? T(0) : beta * ci[j];
    for (int64_t p = 0; p < k; ++p) {
      const T aip = alpha * (trans_a ? a[p * lda + i] : a[i * lda + p]);
      if (trans_b) {
        for (int64_t j = 0; j < n; ++j) ci[j] += aip * b[j * ldb + p];
      } else {
        const T* bp = b + p * ldb;
        for (int64_t j = 0; j < n; ++j) ci[j] += aip * bp[j];
      }
    }
  }
}

}  // namespace seqpar::kernels
