// Runtime choices turned into template parameters, each in one switch (docs/design.md rule 2),
// in the style of flash-attention's static_switch.h. The element-type switch maps a ScalarKind
// to a storage type; the types are given per backend (StorageTypes), since the CPU and CUDA
// kernels store bfloat16, float16 and complex64 in different types. A kind the switch does not
// know ends in the caller's `unsupported` (an error naming what was asked for).
#pragma once

#include "seqpar/kernels/scan_params.h"

namespace seqpar::kernels {

// One backend's storage type of every ScalarKind, in the enum's order.
template <class Float32, class Float64, class BFloat16, class Float16, class Complex64>
struct StorageTypes {};

template <class Types>
struct ScalarKindSwitch;
template <class F32, class F64, class BF16, class F16, class C64>
struct ScalarKindSwitch<StorageTypes<F32, F64, BF16, F16, C64>> {
  template <class Fn, class Unsupported>
  static decltype(auto) run(ScalarKind kind, Fn& fn, Unsupported& unsupported) {
    switch (kind) {
      case ScalarKind::kFloat32: return fn(F32{});
      case ScalarKind::kFloat64: return fn(F64{});
      case ScalarKind::kBFloat16: return fn(BF16{});
      case ScalarKind::kFloat16: return fn(F16{});
      case ScalarKind::kComplex64: return fn(C64{});
    }
    return unsupported();
  }
};

// fn(S{}) with S the storage type of `kind` under Types (a StorageTypes; only S's type is
// meant to be used), or unsupported() for a value outside the enum. Both return the same type.
template <class Types, class Fn, class Unsupported>
decltype(auto) scalar_kind_switch(ScalarKind kind, Fn&& fn, Unsupported&& unsupported) {
  return ScalarKindSwitch<Types>::run(kind, fn, unsupported);
}

}  // namespace seqpar::kernels
