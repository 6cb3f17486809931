#!/usr/bin/env bash
# Installs what is missing (scripts/setup.sh) and builds seqpar against the CPU PyTorch in
# build/ (Release, Ninja, ccache when present). Incremental: a second run only rebuilds what
# changed.
#
#   scripts/build.sh [extra cmake -D options]
#
# Environment: SEQPAR_BUILD_DIR (default build), SEQPAR_JOBS (default: number of cores),
# SEQPAR_BUILD_TARGETS (space-separated CMake targets to build; default: everything).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
build=${SEQPAR_BUILD_DIR:-build}
jobs=${SEQPAR_JOBS:-$(nproc)}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" | grep -E "^-- (seqpar|  )" || true
targets=()
for t in ${SEQPAR_BUILD_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$build" -j "$jobs" "${targets[@]}"
