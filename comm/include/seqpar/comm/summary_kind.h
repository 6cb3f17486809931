// Kinds of summary the cross-rank scan composes (docs/design.md sections 2 and 3): how two
// summaries of a slice compose, their identity, the adjoint's transition, and what one costs to
// exchange. Which ranks exchange what, and in which order, belongs to the algorithms
// (rank_scan.h), not to the kind.
//   diagonal_summary()  (A, B), h -> A*h + B elementwise (A, B the same shape);
//   matrix_summary()    (M, E), S -> M S + E per leading index (M (..., K, K), E (..., K, V)).
#pragma once

#include <ATen/ATen.h>

#include <utility>
#include <vector>

#include "seqpar/comm/cost_model.h"

namespace seqpar::comm {

// The tensors of one summary, on one device, in one dtype.
using SummaryParts = std::vector<at::Tensor>;

// What the cross-rank scan needs to know about a kind of summary: how two compose. Which ranks
// exchange what and in which order belongs to the algorithm (rank_scan.h), not to the kind.
class SummaryKind {
 public:
  virtual ~SummaryKind() = default;
  virtual const char* name() const = 0;
  // Throws std::invalid_argument naming the kind when the parts do not form a summary.
  virtual void check(const SummaryParts& s) const = 0;
  virtual SummaryParts identity_like(const SummaryParts& s) const = 0;
  // later o earlier: the map that applies `earlier` first.
  virtual SummaryParts combine(const SummaryParts& later, const SummaryParts& earlier) const = 0;
  // The state after the map: A*x + B, or M x + E.
  virtual at::Tensor apply(const SummaryParts& s, const at::Tensor& state) const = 0;
  // The summary of the adjoint's transition: conjugate-transposed maps, which compose in the
  // opposite order (the second part, the adjoint's input, is the caller's).
  virtual at::Tensor adjoint_transition(const at::Tensor& transition) const = 0;
  // Bytes and arithmetic of exchanging and combining this summary, for the cost model.
  virtual ExchangeSize exchange_size(const SummaryParts& s) const = 0;
  // True when combine acts independently on aligned scalars of same-shaped parts, so that
  // MPI_Exscan's elementwise user op can run it.
  virtual bool elementwise() const { return false; }
};
const SummaryKind& diagonal_summary();
const SummaryKind& matrix_summary();

// Composition of diagonal summaries, later after earlier: (A_l*A_e, A_l*B_e + B_l).
std::pair<at::Tensor, at::Tensor> compose(const std::pair<at::Tensor, at::Tensor>& later,
                                          const std::pair<at::Tensor, at::Tensor>& earlier);

}  // namespace seqpar::comm
