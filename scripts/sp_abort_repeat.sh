#!/usr/bin/env bash
# Repeats the torchrun/gloo sp_scan job (tests/python/sp_scan_worker.py) and reports how many
# runs ended with a rank aborting ("terminate called ...", a signal, or a non-zero exit) even
# though every rank's checks passed. Slow (each run starts P Python processes), so it is not
# part of the default test run.
#
#   scripts/sp_abort_repeat.sh [RUNS] [P ...]       # default: 20 runs each of P = 5 and 8
# Environment: SEQPAR_LIBRARY (default build/src/libseqpar.so), PYTHON (default python3).
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}; shift || true
ps=("$@"); [ ${#ps[@]} -gt 0 ] || ps=(5 8)
py=${PYTHON:-python3}
export SEQPAR_LIBRARY=${SEQPAR_LIBRARY:-$PWD/build/src/libseqpar.so} OMP_NUM_THREADS=1
log_dir=$(mktemp -d)
for P in "${ps[@]}"; do
  aborts=0 failures=0
  for i in $(seq 1 "$runs"); do
    port=$((20000 + RANDOM % 20000))
    log="$log_dir/P${P}_$i.log"
    "$py" -m torch.distributed.run --nproc-per-node="$P" --master-addr=127.0.0.1 \
      --master-port="$port" tests/python/sp_scan_worker.py check >"$log" 2>&1
    rc=$?
    passed=$(grep -o "sp_scan checks passed on $P ranks" "$log" | wc -l)
    if grep -qE "terminate called|Aborted|core dumped|Signal [0-9]+|exitcode *: *-" "$log"; then
      aborts=$((aborts + 1)); echo "P=$P run $i: abort (rc $rc, $passed/$P ranks passed) -> $log"
    elif [ "$rc" -ne 0 ] || [ "$passed" -ne "$P" ]; then
      failures=$((failures + 1)); echo "P=$P run $i: failed (rc $rc, $passed/$P ranks passed) -> $log"
    fi
  done
  echo "P=$P: $runs runs, $aborts with an abort, $failures failed otherwise"
done
