// The diagonal and matrix summary kinds (seqpar/comm/summary_kind.h), composed with ATen ops
// on whatever device the summaries live.
#include "seqpar/comm/summary_kind.h"

#include <sstream>
#include <stdexcept>
#include <string>

namespace seqpar::comm {

namespace {

[[noreturn]] void bad_summary(const char* kind, const std::string& detail) {
  throw std::invalid_argument(std::string("seqpar::comm ") + kind + " summary: " + detail);
}

class DiagonalSummary final : public SummaryKind {
 public:
  const char* name() const override { return "diagonal"; }
  void check(const SummaryParts& s) const override {
    if (s.size() != 2) bad_summary(name(), "expected 2 parts (A, B)");
    if (s[0].sizes() != s[1].sizes()) bad_summary(name(), "A and B shapes differ");
  }
  SummaryParts identity_like(const SummaryParts& s) const override {
    return {at::ones_like(s[0]), at::zeros_like(s[1])};
  }
  SummaryParts combine(const SummaryParts& later, const SummaryParts& earlier) const override {
    return {later[0] * earlier[0], at::addcmul(later[1], later[0], earlier[1])};
  }
  at::Tensor adjoint_transition(const at::Tensor& A) const override {
    return A.conj().resolve_conj();
  }
  at::Tensor apply(const SummaryParts& s, const at::Tensor& x) const override {
    return at::addcmul(s[1], s[0], x);
  }
  ExchangeSize exchange_size(const SummaryParts& s) const override {
    const double e = static_cast<double>(s[0].element_size());
    return {2.0 * s[0].numel() * e, s[1].numel() * e, 0, 0};  // elementwise: bytes only
  }
  bool elementwise() const override { return true; }
};

class MatrixSummary final : public SummaryKind {
 public:
  const char* name() const override { return "matrix"; }
  void check(const SummaryParts& s) const override {
    if (s.size() != 2) bad_summary(name(), "expected 2 parts (M, E)");
    const at::Tensor &M = s[0], &E = s[1];
    if (M.dim() < 2 || E.dim() != M.dim() || M.size(-1) != M.size(-2) ||
        E.size(-2) != M.size(-1) ||
        M.sizes().slice(0, M.dim() - 2) != E.sizes().slice(0, E.dim() - 2)) {
      std::ostringstream os;
      os << "expected M (..., K, K) and E (..., K, V) with the same leading dims, got M "
         << M.sizes() << " and E " << E.sizes();
      bad_summary(name(), os.str());
    }
  }
  SummaryParts identity_like(const SummaryParts& s) const override {
    const at::Tensor eye = at::eye(s[0].size(-1), s[0].options());
    return {eye.expand(s[0].sizes()).contiguous(), at::zeros_like(s[1])};
  }
  SummaryParts combine(const SummaryParts& later, const SummaryParts& earlier) const override {
    return {at::matmul(later[0], earlier[0]), at::matmul(later[0], earlier[1]) + later[1]};
  }
  at::Tensor adjoint_transition(const at::Tensor& M) const override {
    return M.transpose(-1, -2).conj().resolve_conj().contiguous();
  }
  at::Tensor apply(const SummaryParts& s, const at::Tensor& x) const override {
    return at::matmul(s[0], x) + s[1];
  }
  ExchangeSize exchange_size(const SummaryParts& s) const override {
    const double e = static_cast<double>(s[0].element_size());
    const double K = static_cast<double>(s[0].size(-1)), V = static_cast<double>(s[1].size(-1));
    const double heads = static_cast<double>(s[0].numel()) / (K * K);
    // combine: M_l M_e and M_l E_e; apply: M x.
    return {(s[0].numel() + s[1].numel()) * e, s[1].numel() * e, 2.0 * heads * K * K * (K + V),
            2.0 * heads * K * K * V};
  }
};

}  // namespace

const SummaryKind& diagonal_summary() {
  static const DiagonalSummary kind;
  return kind;
}
const SummaryKind& matrix_summary() {
  static const MatrixSummary kind;
  return kind;
}

std::pair<at::Tensor, at::Tensor> compose(const std::pair<at::Tensor, at::Tensor>& later,
                                          const std::pair<at::Tensor, at::Tensor>& earlier) {
  const SummaryParts s = diagonal_summary().combine({later.first, later.second},
                                                    {earlier.first, earlier.second});
  return {s[0], s[1]};
}

}  // namespace seqpar::comm
