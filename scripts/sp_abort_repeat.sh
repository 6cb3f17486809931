#!/usr/bin/env bash
# Repeats the clean-exit torchrun job (tests/python/sp_exit_worker.py: a user-style script over
# gloo that runs seqpar.sp ops forward and backward with its tensors alive at module level, then
# exits) and counts the runs in which a rank aborted at exit ("terminate called ...", a signal,
# or a non-zero exit) or a check failed. Exits 1 if any run did. ctest's sp_clean_exit runs it
# (docs/sequence_parallel.md, "Clean exits").
#
#   scripts/sp_abort_repeat.sh [RUNS] [P ...]    # default: 20 runs each of P = 2 and 5
#
# Environment: SEQPAR_EXIT_MODES (default "destroy no-destroy": with and without
# dist.destroy_process_group() before sys.exit(0)), SEQPAR_LIBRARY (default
# build/src/libseqpar.so), PYTHON (default python3).
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}; shift || true
ps=("$@"); [ ${#ps[@]} -gt 0 ] || ps=(2 5)
py=${PYTHON:-python3}
# One intra-op thread per rank: the ranks share this machine's cores.
export SEQPAR_LIBRARY=${SEQPAR_LIBRARY:-$PWD/build/src/libseqpar.so} OMP_NUM_THREADS=1
log_dir=$(mktemp -d)
bad_total=0
for mode in ${SEQPAR_EXIT_MODES:-destroy no-destroy}; do
  for P in "${ps[@]}"; do
    aborts=0 failures=0
    for i in $(seq 1 "$runs"); do
      port=$((20000 + RANDOM % 20000))
      log="$log_dir/${mode}_P${P}_$i.log"
      timeout 300 "$py" -m torch.distributed.run --nproc-per-node="$P" --master-addr=127.0.0.1 \
        --master-port="$port" tests/python/sp_exit_worker.py "$mode" >"$log" 2>&1
      rc=$?
      passed=$(grep -o "exit checks passed on $P ranks" "$log" | wc -l)
      if grep -qE "terminate called|Aborted|core dumped|Signal [0-9]+|exitcode *: *-" "$log"; then
        aborts=$((aborts + 1)); echo "$mode P=$P run $i: abort (rc $rc, $passed/$P ranks passed) -> $log"
      elif [ "$rc" -ne 0 ] || [ "$passed" -ne "$P" ]; then
        failures=$((failures + 1)); echo "$mode P=$P run $i: failed (rc $rc, $passed/$P ranks passed) -> $log"
      fi
    done
    echo "$mode P=$P: $runs runs, $aborts with an abort, $failures failed otherwise"
    bad_total=$((bad_total + aborts + failures))
  done
done
if [ "$bad_total" -eq 0 ]; then echo "sp_abort_repeat: OK"; exit 0; fi
echo "sp_abort_repeat: $bad_total bad runs (logs in $log_dir)"; exit 1
