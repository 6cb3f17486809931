#!/usr/bin/env bash
# Scaling sweeps of seqpar-bench on this machine under mpirun (docs/benchmarks.md): the
# exchange for P = 2..MAX at each injected latency, and the sequence-parallel scan for
# P = 1..MAX as a weak sweep (fixed tokens per rank) and a strong sweep (fixed total). Every
# point appends records to one JSON file per run (OUT/*.json); bench_results.py merges them.
#
#   scripts/bench_sweep.sh [--out DIR] [--max-ranks N] [--latencies "0 50 1000"] [--quick]
#                          [--reps N] [--only exchange|sp_scan]
#
# More ranks than cores oversubscribe them (the 2-core reference machine runs P up to 8 that
# way); the records say so through env.device and env.world_size. A line per point with an
# estimate of the time left.
set -euo pipefail
cd "$(dirname "$0")/.."
out=runs/bench_sweep max=8 latencies="0 50 1000" quick=() reps=() only=all
tokens_per_rank=65536 total_tokens=262144
while [[ $# -gt 0 ]]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --max-ranks) max=$2; shift 2 ;;
    --latencies) latencies=$2; shift 2 ;;
    --quick) quick=(--quick); tokens_per_rank=16384; total_tokens=65536; shift ;;
    --reps) reps=(--reps "$2"); shift 2 ;;
    --only) only=$2; shift 2 ;;
    *) echo "bench_sweep.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[[ $max =~ ^[0-9]+$ && $max -ge 2 ]] || { echo "bench_sweep.sh: --max-ranks must be >= 2, got '$max'" >&2; exit 2; }
bench=${SEQPAR_BUILD_DIR:-build}/bin/seqpar-bench
[[ -x $bench ]] || { echo "bench_sweep.sh: $bench not found; run scripts/build.sh first" >&2; exit 2; }
mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
cores=$(env -u OMP_NUM_THREADS nproc)
# --oversubscribe only where it is needed: with it Open MPI yields the core whenever a rank
# waits, which adds scheduler latency (hundreds of microseconds) to every message.
mpirun_for() {
  local extra=()
  (( $1 > cores )) && extra=(--oversubscribe)
  echo mpirun "${extra[@]}" --bind-to none -x OMP_NUM_THREADS -x SEQPAR_COMM_DELAY_US -np "$1"
}

points=()
if [[ $only != sp_scan ]]; then
  for us in $latencies; do for p in $(seq 2 "$max"); do points+=("exchange $us $p"); done; done
fi
if [[ $only != exchange ]]; then
  for p in $(seq 1 "$max"); do points+=("weak 0 $p" "strong 0 $p"); done
fi
start=$(date +%s) done_=0
for point in "${points[@]}"; do
  read -r kind us p <<< "$point"
  export SEQPAR_COMM_DELAY_US=$us
  case $kind in
    exchange) $(mpirun_for "$p") "$bench" exchange "${quick[@]}" "${reps[@]}" --no-progress \
                --json "$out/exchange_d${us}_p$p.json" > /dev/null ;;
    weak) $(mpirun_for "$p") "$bench" sp_scan "${quick[@]}" "${reps[@]}" --no-progress \
            --tokens_per_rank "$tokens_per_rank" --json "$out/sp_weak_p$p.json" > /dev/null ;;
    strong) $(mpirun_for "$p") "$bench" sp_scan "${quick[@]}" "${reps[@]}" --no-progress \
              --tokens "$total_tokens" --json "$out/sp_strong_p$p.json" > /dev/null ;;
  esac
  done_=$((done_ + 1))
  elapsed=$(( $(date +%s) - start ))
  left=$(( elapsed * (${#points[@]} - done_) / done_ ))
  printf '[%d/%d] %s (delay %s us, P = %s) | ~%dm%02ds left\n' "$done_" "${#points[@]}" \
    "$kind" "$us" "$p" $((left / 60)) $((left % 60))
done
echo "records in $out; merge them with: python3 benchmarks/bench_results.py merge $out/*.json"
