#!/usr/bin/env bash
# Peak host memory and time of the quickstart (20 steps, 2 ranks) with two builds of
# libseqpar.so, alternated ROUNDS times: the aligned outputs' cost in the training program,
# which keeps freed memory for reuse (keep_freed_memory). Run from the repository root after
# scripts/build.sh; BASE_LIB_DIR holds the libseqpar.so to compare against (this tree's is
# build/src).
#
#   docs/results/output_alignment/training_memory.sh BASE_LIB_DIR ROUNDS > training_memory.txt
set -euo pipefail
base=$1 rounds=$2
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "build | seconds for steps 1..20 | peak host MiB (rank 0) | last loss"
for r in $(seq "$rounds"); do
  for v in "base:$base" "new:$PWD/build/src"; do
    LD_LIBRARY_PATH=${v#*:} OMP_NUM_THREADS=1 mpirun --allow-run-as-root -np 2 \
      -x LD_LIBRARY_PATH -x OMP_NUM_THREADS build/bin/seqpar-train --config configs/quickstart.ini \
      --steps 20 --val_every 0 --save_every 0 --checkpoint_dir "$tmp/ck" \
      --metrics "$tmp/m.jsonl" --progress_bar false > "$tmp/out" 2>&1
    echo "${v%%:*} | $(grep -o 'steps 1..20 in [0-9.]*' "$tmp/out" | awk '{print $4}') |" \
         "$(grep -o 'peak memory [0-9]*' "$tmp/out" | awk '{print $3}') |" \
         "$(tail -1 "$tmp/m.jsonl" | grep -o '"loss":[0-9.]*' | cut -d: -f2)"
    rm -rf "$tmp/ck"
  done
done
