// The model families seqpar-train builds (seqpar/models/byte_lm.h): one enum so that the
// trainer, the options and the models branch on a type the compiler checks, and the names
// ("manifold", "linoss", "gla", "gated_deltanet", "psm") are spelled in one place.
#pragma once

#include <string>

namespace seqpar::models {

enum class ModelKind : int {
  kManifold,       // ManifoldScan blocks (diagonal recurrence, seqpar::scan)
  kLinoss,         // ManifoldScan blocks in linoss mode (a 2x2 oscillator, seqpar::block_scan)
  kGla,            // MatrixStateBlock, gated linear attention
  kGatedDeltaNet,  // MatrixStateBlock, gated delta rule
  kPsm,            // PsmBlock, a prefix-scannable model
};

const char* model_kind_name(ModelKind kind);
// The inverse of model_kind_name; throws std::invalid_argument listing the names otherwise.
ModelKind parse_model_kind(const std::string& name);
// manifold and linoss: the families built of ManifoldScan blocks.
inline bool uses_manifold_blocks(ModelKind kind) {
  return kind == ModelKind::kManifold || kind == ModelKind::kLinoss;
}
// gla and gated_deltanet: the families with a matrix-valued state (MatrixStateBlock).
inline bool has_matrix_state(ModelKind kind) {
  return kind == ModelKind::kGla || kind == ModelKind::kGatedDeltaNet;
}

}  // namespace seqpar::models
