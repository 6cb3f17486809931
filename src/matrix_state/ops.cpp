// The matrix-state ops (schemas in src/ops/library.cpp) are compositions of ATen operations,
// registered as CompositeImplicitAutograd: every backend ATen runs on (CPU, CUDA, Meta for fake
// tensors) and autograd come from the operations they are made of.
#include <torch/library.h>

#include "seqpar/matrix_state.h"

TORCH_LIBRARY_IMPL(seqpar, CompositeImplicitAutograd, m) {
  m.impl("chunk_gla", &seqpar::chunk_gla);
  m.impl("chunk_gated_delta_rule", &seqpar::chunk_gated_delta_rule);
  m.impl("chunk_gated_delta_product", &seqpar::chunk_gated_delta_product);
  m.impl("chunk_kda", &seqpar::chunk_kda);
}
