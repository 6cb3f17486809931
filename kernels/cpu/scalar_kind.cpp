// Names of the element types, for error messages.
#include <stdexcept>
#include <string>

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

namespace seqpar::kernels::cpu {

[[noreturn]] void throw_unsupported_kind(const char* what, ScalarKind kind) {
  throw std::invalid_argument(std::string(what) + ": unsupported element type " +
                              std::to_string(static_cast<int>(kind)));
}

}  // namespace seqpar::kernels::cpu
