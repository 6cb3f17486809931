// CPU entry points of the scan kernels. Multithreaded (a persistent pool sized by
// params.num_threads) and vectorized; see kernels/cpu/scan_engine.h for the scheduling.
//
// The engine is built for several instruction-set targets in one library and the best one
// this CPU supports is chosen at run time (kernels/cpu/target_dispatch.cpp): on x86-64
// "scalar" (x86-64-v2), "avx2" (x86-64-v3: AVX2, FMA, F16C) and "avx512" (x86-64-v4); on
// aarch64 "neon" (armv8-a) and "sve" (SVE with 256-bit vectors); a build with
// SEQPAR_NATIVE_CPU=ON has the single target "native". The environment variable
// SEQPAR_CPU_CAPABILITY (scalar, avx2, avx512 on x86-64; scalar, neon, sve on aarch64) caps the
// choice: a cap above what the CPU has runs the best target below it; an unknown value makes
// the first scan throw std::invalid_argument naming the variable and the accepted values.
#pragma once

#include <string>
#include <vector>

#include "seqpar/kernels/scan_params.h"

namespace seqpar::kernels::cpu {

void scan_forward(const ScanForwardParams& params);
void scan_backward(const ScanBackwardParams& params);
void scan_summary(const ScanSummaryParams& params);

// The target the scans run on (reads SEQPAR_CPU_CAPABILITY on first use; may throw as above).
std::string capability();
// Caps the target from code, like SEQPAR_CPU_CAPABILITY (which it overrides); throws
// std::invalid_argument for an unknown name.
void set_capability_cap(const std::string& name);
// Targets compiled into this library that this CPU can run, lowest first.
std::vector<std::string> supported_capabilities();

}  // namespace seqpar::kernels::cpu
