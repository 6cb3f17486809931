// Names of the model families (seqpar/models/model_kind.h).
#include "seqpar/models/model_kind.h"

#include <stdexcept>

namespace seqpar::models {

const char* model_kind_name(ModelKind kind) {
  switch (kind) {
    case ModelKind::kManifold: return "manifold";
    case ModelKind::kLinoss: return "linoss";
    case ModelKind::kGla: return "gla";
    case ModelKind::kGatedDeltaNet: return "gated_deltanet";
    case ModelKind::kPsm: return "psm";
  }
  return "unknown";
}

ModelKind parse_model_kind(const std::string& name) {
  if (name == "manifold") return ModelKind::kManifold;
  if (name == "linoss") return ModelKind::kLinoss;
  if (name == "gla") return ModelKind::kGla;
  if (name == "gated_deltanet") return ModelKind::kGatedDeltaNet;
  if (name == "psm") return ModelKind::kPsm;
  throw std::invalid_argument("unknown model '" + name +
                              "' (expected manifold, linoss, gla, gated_deltanet or psm)");
}

}  // namespace seqpar::models
