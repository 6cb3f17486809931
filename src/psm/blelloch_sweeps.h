// The two halves of the static Blelloch scan over the chunk axis (dim 1) of a batch of chunk
// state sequences, shared by the one-device scan and the sequence-parallel one
// (seqpar/psm.h states the order of combines). Each tree level is one batched Agg call.
#pragma once

#include <seqpar/psm.h>

#include <optional>
#include <vector>

namespace seqpar::psm::detail {

// levels[0] = chunks (batch, n, ...); levels[k + 1] pairs up levels[k]: entry j is
// Agg(levels[k][2j], levels[k][2j + 1]), or levels[k][2j] alone where 2j + 1 is past the end
// (the padding identity). Stops at the last level with more than one entry unless with_root
// (then the single-entry root level is included).
std::vector<at::Tensor> up_sweep(const at::Tensor& chunks, const Aggregate& agg, bool with_root);

// The exclusive prefix of every leaf, from the up-sweep's levels and the prefix of the whole
// block (`entering`; nullopt: the identity, then entry 0 of the result holds `identity_value`,
// zeros shaped like one chunk state when undefined).
Prefixes down_sweep(const std::vector<at::Tensor>& levels, const Aggregate& agg,
                    const std::optional<at::Tensor>& entering,
                    const at::Tensor& identity_value = {});

}  // namespace seqpar::psm::detail
