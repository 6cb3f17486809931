// Static Blelloch scan of chunk states on one device (seqpar/psm.h, blelloch_sweeps.h).
#include <c10/util/Exception.h>

#include "psm/blelloch_sweeps.h"

namespace seqpar::psm {
namespace detail {
namespace {

// (batch, p, S...) -> (batch * p, S...) and back: Agg sees every pair of a level as one batch.
at::Tensor fold_batch(const at::Tensor& x) {
  auto shape = x.sizes().vec();
  shape.erase(shape.begin());
  shape[0] = x.size(0) * x.size(1);
  return x.reshape(shape);
}
at::Tensor unfold_batch(const at::Tensor& x, int64_t batch) {
  auto shape = x.sizes().vec();
  shape[0] = x.size(0) / batch;
  shape.insert(shape.begin(), batch);
  return x.reshape(shape);
}

at::Tensor call_agg(const Aggregate& agg, const at::Tensor& left, const at::Tensor& right) {
  const int64_t batch = left.size(0);
  const at::Tensor l = fold_batch(left);  // strided views: reshape copies, so once
  at::Tensor out = agg(l, fold_batch(right));
  TORCH_CHECK(out.sizes() == l.sizes(), "seqpar::psm: Agg returned shape ", out.sizes(),
              " for inputs of shape ", l.sizes(), " (it must keep the chunk state's shape)");
  return unfold_batch(out, batch);
}

// Entries 0, 2, 4, ... (even) and 1, 3, 5, ... (odd) of the first 2 * pairs along dim 1.
std::pair<at::Tensor, at::Tensor> split_pairs(const at::Tensor& v, int64_t pairs) {
  auto shape = v.sizes().vec();
  shape[1] = pairs;
  shape.insert(shape.begin() + 2, 2);
  at::Tensor p = v.narrow(1, 0, 2 * pairs).reshape(shape);
  return {p.select(2, 0), p.select(2, 1)};
}

}  // namespace

std::vector<at::Tensor> up_sweep(const at::Tensor& chunks, const Aggregate& agg, bool with_root) {
  std::vector<at::Tensor> levels{chunks};
  while (levels.back().size(1) > 1) {
    const at::Tensor v = levels.back();
    const int64_t n = v.size(1), pairs = n / 2;
    if (n - pairs == 1 && !with_root) break;  // the next level is the root
    auto [left, right] = split_pairs(v, pairs);
    at::Tensor next = call_agg(agg, left, right);
    if (n % 2 == 1) next = at::cat({next, v.narrow(1, n - 1, 1)}, 1);
    levels.push_back(next);
  }
  return levels;
}

Prefixes down_sweep(const std::vector<at::Tensor>& levels, const Aggregate& agg,
                    const std::optional<at::Tensor>& entering, const at::Tensor& identity_value) {
  const at::Tensor& leaves = levels.at(0);
  Prefixes out;
  out.first_is_identity = !entering.has_value();
  if (leaves.size(1) == 0) {
    out.states = leaves;
    return out;
  }
  at::Tensor pref;  // prefixes of the current level's entries
  if (entering) {
    pref = entering->unsqueeze(1);
  } else {
    pref = identity_value.defined() ? identity_value.unsqueeze(1)
                                    : at::zeros_like(leaves.narrow(1, 0, 1));
  }
  for (size_t k = levels.size(); k-- > 0;) {
    const at::Tensor& v = levels[k];
    const int64_t n = v.size(1), pairs = n / 2;
    if (n <= 1) continue;
    at::Tensor left = split_pairs(v, pairs).first;  // the left children's values
    at::Tensor parent = pref.narrow(1, 0, pairs);
    at::Tensor right_prefix;  // Agg(parent prefix, left value), the identity skipped
    if (out.first_is_identity) {
      right_prefix = left.narrow(1, 0, 1);
      if (pairs > 1) {
        right_prefix = at::cat({right_prefix, call_agg(agg, parent.narrow(1, 1, pairs - 1),
                                                       left.narrow(1, 1, pairs - 1))},
                               1);
      }
    } else {
      right_prefix = call_agg(agg, parent, left);
    }
    auto shape = v.sizes().vec();
    shape[1] = 2 * pairs;
    at::Tensor next = at::stack({parent, right_prefix}, 2).reshape(shape);
    if (n % 2 == 1) next = at::cat({next, pref.narrow(1, pairs, 1)}, 1);
    pref = next;
  }
  out.states = pref;
  return out;
}

}  // namespace detail

Prefixes static_scan(const at::Tensor& chunks, const Aggregate& agg,
                     const std::optional<at::Tensor>& entering) {
  TORCH_CHECK(agg.fn, "seqpar::psm::static_scan: agg has no function");
  TORCH_CHECK(chunks.dim() >= 2, "seqpar::psm::static_scan: chunks must be (batch, n, ...), got ",
              chunks.sizes());
  if (entering) {
    TORCH_CHECK(chunks.size(1) == 0 || entering->sizes() == chunks.select(1, 0).sizes(),
                "seqpar::psm::static_scan: entering must be shaped like one chunk state ",
                chunks.select(1, 0).sizes(), ", got ", entering->sizes());
  }
  return detail::down_sweep(detail::up_sweep(chunks, agg, /*with_root=*/false), agg, entering);
}

}  // namespace seqpar::psm
