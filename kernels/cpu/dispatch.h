// Maps a runtime ScalarKind to a storage type, once, for every CPU kernel (docs/design.md rule 2).
#pragma once

#include "target.h"


#include "element_types.h"
#include "seqpar/kernels/scan_params.h"

namespace seqpar::kernels::cpu {
// Defined once, in the baseline (scalar_kind.cpp): the per-target copies of the engine then
// instantiate no std::string code that the linker could share between targets (target.h).
[[noreturn]] void throw_unsupported_kind(const char* what, ScalarKind kind);
}  // namespace seqpar::kernels::cpu

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET {

template <class Fn>
void dispatch_scalar_kind(ScalarKind kind, const char* what, Fn&& fn) {
  switch (kind) {
    case ScalarKind::kFloat32: fn(float{}); return;
    case ScalarKind::kFloat64: fn(double{}); return;
    case ScalarKind::kBFloat16: fn(BFloat16{}); return;
    case ScalarKind::kFloat16: fn(Float16{}); return;
    case ScalarKind::kComplex64: fn(Complex<float>{}); return;
  }
  throw_unsupported_kind(what, kind);
}

}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET
