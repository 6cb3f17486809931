// The instruction-set target this translation unit is compiled for.
//
// The CPU engine (scan_forward.cpp, scan_backward.cpp, scan_summary.cpp and the headers they
// include) is compiled once per target with that target's -march flags (kernels/CMakeLists.txt)
// and SEQPAR_CPU_TARGET set to the target's name; everything it defines lives in the namespace
// seqpar::kernels::cpu::SEQPAR_CPU_TARGET, so the copies never share an inline function or a
// template instance (which would let the linker hand AVX-512 code to the baseline copy).
// target_dispatch.cpp picks one copy at run time (docs/cpu_kernels.md, "Targets").
#pragma once

#ifndef SEQPAR_CPU_TARGET
#define SEQPAR_CPU_TARGET native
#endif
