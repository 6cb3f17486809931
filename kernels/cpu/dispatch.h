// Maps a runtime ScalarKind to a storage type, once, for every CPU kernel (docs/design.md rule 2).
#pragma once

#include "target.h"

#include <type_traits>

#include "element_types.h"
#include "seqpar/kernels/scan_params.h"
#include "seqpar/kernels/static_switch.h"

namespace seqpar::kernels::cpu {
// Defined once, in the baseline (scalar_kind.cpp): the per-target copies of the engine then
// instantiate no std::string code that the linker could share between targets (target.h).
[[noreturn]] void throw_unsupported_kind(const char* what, ScalarKind kind);
}  // namespace seqpar::kernels::cpu

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET {

template <class Fn>
void dispatch_scalar_kind(ScalarKind kind, const char* what, Fn&& fn) {
  scalar_kind_switch<StorageTypes<float, double, BFloat16, Float16, Complex<float>>>(
      kind, fn, [&] { throw_unsupported_kind(what, kind); });
}

}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET {

// The real element types only (the 2x2 block scan has no complex form): complex64 ends in
// throw_unsupported_kind like a kind outside the enum.
template <class Fn>
void dispatch_real_kind(ScalarKind kind, const char* what, Fn&& fn) {
  struct NoComplex {};
  scalar_kind_switch<StorageTypes<float, double, BFloat16, Float16, NoComplex>>(
      kind,
      [&](auto tag) {
        if constexpr (std::is_same_v<decltype(tag), NoComplex>)
          throw_unsupported_kind(what, kind);
        else
          fn(tag);
      },
      [&] { throw_unsupported_kind(what, kind); });
}

}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET
