#!/usr/bin/env bash
# Builds the torch-free CPU kernels and their tests (tests/kernels) for lower x86-64
# instruction-set levels than this machine's, and runs them here: the code paths that CPUs
# without AVX-512 take (x86-64-v3: AVX2+FMA; x86-64-v2: SSE4.2) are compiled and tested on
# every CI run whatever CI's CPU has. A guard until the kernels dispatch at run time (issue 8).
#
#   scripts/cpu_isa_check.sh [BUILD_DIR]        # default build-isa/
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build-isa}
mkdir -p "$out"
[ "$(uname -m)" = x86_64 ] || { echo "cpu_isa_check: x86-64 only; nothing to do on $(uname -m)"; exit 0; }
gtest_libs=$(pkg-config --libs gtest_main 2>/dev/null || echo "-lgtest_main -lgtest")
for level in x86-64-v2 x86-64-v3; do
  dir="$out/$level"
  mkdir -p "$dir"
  objs=()
  for src in kernels/cpu/*.cpp; do
    obj="$dir/$(basename "$src" .cpp).o"
    g++ -std=c++17 -O2 -march="$level" -Ikernels/include -Ikernels -c "$src" -o "$obj" &
    objs+=("$obj")
  done
  wait
  g++ -std=c++17 -O2 -march="$level" -Ikernels/include tests/kernels/test_cpu_kernels.cpp "${objs[@]}" \
    -o "$dir/test_cpu_kernels" $gtest_libs -pthread
  echo "== test_cpu_kernels built with -march=$level"
  "$dir/test_cpu_kernels" --gtest_brief=1
done
