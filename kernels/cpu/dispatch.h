// Maps a runtime ScalarKind to a storage type, once, for every CPU kernel (docs/design.md rule 2).
#pragma once

#include <stdexcept>
#include <string>

#include "element_types.h"
#include "seqpar/kernels/scan_params.h"

namespace seqpar::kernels::cpu {

template <class Fn>
void dispatch_scalar_kind(ScalarKind kind, const char* what, Fn&& fn) {
  switch (kind) {
    case ScalarKind::kFloat32: fn(float{}); return;
    case ScalarKind::kFloat64: fn(double{}); return;
    case ScalarKind::kBFloat16: fn(BFloat16{}); return;
    case ScalarKind::kFloat16: fn(Float16{}); return;
    case ScalarKind::kComplex64: fn(Complex<float>{}); return;
  }
  throw std::invalid_argument(std::string(what) + ": unsupported element type " +
                              std::to_string(static_cast<int>(kind)));
}

}  // namespace seqpar::kernels::cpu
