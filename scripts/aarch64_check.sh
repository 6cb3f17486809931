#!/usr/bin/env bash
# Cross-compiles the torch-free CPU kernels for aarch64 (their `neon` target, Highway's NEON
# path) with Debian's g++-aarch64-linux-gnu, builds GoogleTest from the libgtest-dev sources
# with the same compiler, and runs tests/kernels/test_cpu_kernels under qemu-user: the code an
# Arm machine runs is compiled and tested on every CI run. LibTorch-dependent parts are not
# cross-built (no aarch64 LibTorch here). The cross compiler, qemu-user, GoogleTest's sources
# and Highway come from scripts/setup.sh.
#
#   scripts/aarch64_check.sh [BUILD_DIR]        # default build-aarch64/
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build-aarch64}
for tool in aarch64-linux-gnu-g++ qemu-aarch64; do
  command -v "$tool" >/dev/null || { echo "aarch64_check: $tool missing; scripts/setup.sh installs it" >&2; exit 1; }
done
for f in /usr/src/googletest/googletest/src/gtest-all.cc /usr/include/hwy/highway.h; do
  [ -f "$f" ] || { echo "aarch64_check: $f missing; scripts/setup.sh installs it" >&2; exit 1; }
done
cxx=aarch64-linux-gnu-g++
gtest=/usr/src/googletest/googletest
mkdir -p "$out"
# Same flags as kernels/CMakeLists.txt's neon target: Highway 1.0's NEON target wants the
# crypto extension enabled (the compiler emits no crypto instruction unless asked).
target_flags=(-std=c++17 -O2 -march=armv8-a+crypto -Ikernels/include -Ikernels)
pids=()
for src in kernels/cpu/scan_forward.cpp kernels/cpu/scan_backward.cpp kernels/cpu/scan_summary.cpp; do
  "$cxx" "${target_flags[@]}" -DSEQPAR_CPU_TARGET=neon -DSEQPAR_HAVE_HWY=1 -DHWY_COMPILE_ONLY_STATIC=1 \
    -c "$src" -o "$out/$(basename "$src" .cpp).o" & pids+=($!)
done
for src in kernels/cpu/scalar_kind.cpp kernels/cpu/thread_pool.cpp kernels/cpu/target_dispatch.cpp; do
  "$cxx" "${target_flags[@]}" -DSEQPAR_CPU_HAVE_NEON=1 -c "$src" -o "$out/$(basename "$src" .cpp).o" & pids+=($!)
done
[ -f "$out/gtest-all.o" ] || { "$cxx" -std=c++17 -O1 -I"$gtest/include" -I"$gtest" -c "$gtest/src/gtest-all.cc" -o "$out/gtest-all.o" & pids+=($!); }
[ -f "$out/gtest_main.o" ] || { "$cxx" -std=c++17 -O1 -I"$gtest/include" -c "$gtest/src/gtest_main.cc" -o "$out/gtest_main.o" & pids+=($!); }
for p in "${pids[@]}"; do wait "$p"; done
"$cxx" "${target_flags[@]}" -I"$gtest/include" tests/kernels/test_cpu_kernels.cpp "$out"/*.o \
  -o "$out/test_cpu_kernels" -pthread
echo "== test_cpu_kernels for aarch64 (neon target) under qemu-aarch64"
qemu-aarch64 -L /usr/aarch64-linux-gnu "$out/test_cpu_kernels" --gtest_brief=1
