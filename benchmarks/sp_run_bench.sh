#!/usr/bin/env bash
# Runs sp_exchange_bench for several P under mpirun and fits the cost model.
#   benchmarks/sp_run_bench.sh [BUILD_DIR] [P ...]      (defaults: build-comm, 2 3 4 8)
# Resume: each P writes its own JSON; rerun only the missing P values, then the fit.
set -euo pipefail
build=${1:-build-comm}; shift || true
ps=${*:-2 3 4 8}
bench=$(find "$build" -name sp_exchange_bench -type f -perm -u+x | head -1)
out=benchmarks/sp_results
mkdir -p "$out"
# One thread per rank: the ranks share the machine's cores.
export OMP_NUM_THREADS=1
for p in $ps; do
  # --oversubscribe: more ranks than cores on small machines; --allow-run-as-root: containers.
  mpirun --oversubscribe --allow-run-as-root --bind-to none -np "$p" "$bench" \
    --json "$out/mpi_np$p.json" --min-seconds 0.2 | tee "$out/mpi_np$p.txt"
done
python3 benchmarks/sp_cost_model.py "$out"/mpi_np*.json --out "$out/sp_cost_model.json" \
  --plot docs/sequence_parallel.png | tee "$out/sp_cost_model.txt"
