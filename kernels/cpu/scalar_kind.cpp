// Names of the element types, for error messages.
#include "seqpar/kernels/scan_params.h"

namespace seqpar::kernels {

const char* scalar_kind_name(ScalarKind kind) {
  switch (kind) {
    case ScalarKind::kFloat32: return "float32";
    case ScalarKind::kFloat64: return "float64";
    case ScalarKind::kBFloat16: return "bfloat16";
    case ScalarKind::kFloat16: return "float16";
    case ScalarKind::kComplex64: return "complex64";
  }
  return "unknown";
}

}  // namespace seqpar::kernels
