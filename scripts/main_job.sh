#!/usr/bin/env bash
# The main job (README.md): installs what is missing, builds, and runs the CPU scan benchmark
# (forward/backward GB/s against the triad bandwidth measured in the same run). Writes
# runs/cpu_scan_bench.json.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
mkdir -p runs
./build/benchmarks/cpu_scan_bench --json runs/cpu_scan_bench.json "$@"
