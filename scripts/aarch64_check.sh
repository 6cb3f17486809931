#!/usr/bin/env bash
# Cross-compiles the torch-free CPU kernels for aarch64 (their `neon` target, Highway's NEON
# path, and their `sve` target, Highway's SVE_256 path) with Debian's g++-aarch64-linux-gnu,
# builds GoogleTest from the libgtest-dev sources with the same compiler, and runs
# tests/kernels/test_cpu_kernels under qemu-user: with 256-bit SVE vectors (the sve copy runs),
# capped to neon, and with 128-bit SVE vectors (the dispatcher must fall back to neon). The
# code an Arm machine runs is compiled and tested on every CI run. LibTorch-dependent parts are not
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
rm -f "$out"/scan_*.o  # engine objects of older layouts of this folder
# Same flags as kernels/CMakeLists.txt's targets: Highway 1.0's NEON target wants the crypto
# extension enabled (the compiler emits no crypto instruction unless asked).
base_flags=(-std=c++17 -O2 -Ikernels/include -Ikernels)
declare -A target_march=([neon]="-march=armv8-a+crypto"
                         [sve]="-march=armv8.2-a+sve+crypto -msve-vector-bits=256")
pids=()
for t in neon sve; do
  mkdir -p "$out/$t"
  for src in kernels/cpu/scan_forward.cpp kernels/cpu/scan_backward.cpp kernels/cpu/scan_summary.cpp \
             kernels/cpu/chunk_delta_rule.cpp kernels/cpu/chunk_gla.cpp kernels/cpu/block_scan.cpp; do
    # shellcheck disable=SC2086  # the -march words split on purpose
    "$cxx" "${base_flags[@]}" ${target_march[$t]} -DSEQPAR_CPU_TARGET=$t -DSEQPAR_HAVE_HWY=1 \
      -DHWY_COMPILE_ONLY_STATIC=1 -c "$src" -o "$out/$t/$(basename "$src" .cpp).o" & pids+=($!)
  done
done
for src in kernels/cpu/scalar_kind.cpp kernels/cpu/thread_pool.cpp kernels/cpu/target_dispatch.cpp; do
  "$cxx" "${base_flags[@]}" -march=armv8-a -DSEQPAR_CPU_HAVE_NEON=1 -DSEQPAR_CPU_HAVE_SVE=1 \
    -c "$src" -o "$out/$(basename "$src" .cpp).o" & pids+=($!)
done
[ -f "$out/gtest-all.o" ] || { "$cxx" -std=c++17 -O1 -I"$gtest/include" -I"$gtest" -c "$gtest/src/gtest-all.cc" -o "$out/gtest-all.o" & pids+=($!); }
[ -f "$out/gtest_main.o" ] || { "$cxx" -std=c++17 -O1 -I"$gtest/include" -c "$gtest/src/gtest_main.cc" -o "$out/gtest_main.o" & pids+=($!); }
for p in "${pids[@]}"; do wait "$p"; done
"$cxx" "${base_flags[@]}" -march=armv8-a -I"$gtest/include" tests/kernels/test_cpu_kernels.cpp \
  tests/kernels/test_cpu_accuracy.cpp tests/kernels/test_cpu_segments.cpp \
  tests/kernels/test_cpu_block_scan.cpp tests/kernels/test_cpu_chunks.cpp "$out"/*.o "$out"/neon/*.o "$out"/sve/*.o \
  -o "$out/test_cpu_kernels" -pthread
# qemu's `max` CPU has SVE; sve-default-vector-length (bytes) sets the vector length. The
# long-sequence accuracy tests take ~4 of qemu's minutes a run and are left out unless
# SEQPAR_AARCH64_ACCURACY=1 (they run natively per x86 target in ctest).
# The long packed-sequence kernel tests and the block scan's time-inner tiles likewise (the segments' every-dtype/layout/thread test
# and the degenerate bounds run here: aarch64's targets run nowhere else).
filter=-LongSequences/CpuAccuracy.*:CpuKernelsSegments.TimeContiguousTiles:CpuKernelsSegments.ThousandRandomSegments:CpuKernelsSegments.WideRows:CpuBlockScan.TimeInnerTiles
[ "${SEQPAR_AARCH64_ACCURACY:-0}" = 1 ] && filter='*'
run() {  # run VECTOR_BYTES EXPECTED_TARGET CAP GTEST_FILTER
  echo "== test_cpu_kernels for aarch64 under qemu-aarch64: SVE vectors of $1 bytes," \
       "cap '${3:-none}', expecting the '$2' target, tests '$4'"
  SEQPAR_CPU_CAPABILITY=$3 SEQPAR_EXPECT_TARGET=$2 SEQPAR_EXPECT_TARGET_SUPPORTED=1 \
    qemu-aarch64 -cpu "max,sve-default-vector-length=$1" -L /usr/aarch64-linux-gnu \
    "$out/test_cpu_kernels" --gtest_brief=1 --gtest_filter="$4"
}
run 32 sve "" "$filter"
run 32 neon neon "$filter"
run 16 neon "" 'CpuTargets.*'  # 128-bit SVE: the dispatcher must fall back to neon
