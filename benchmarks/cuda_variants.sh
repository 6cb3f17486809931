#!/usr/bin/env bash
# Compares compile-time variants of the CUDA scan's tile knobs (scan_plan.h, scan_kernel.cuh) in
# one GPU run: builds tests/kernels/cuda/gpu_check/scan_gpu_check once per variant, in parallel, runs
# its correctness check and bench for each, and prints fwd/bwd % of copy bandwidth per shape
# side by side. Needs nvcc and a GPU; measure before changing a default.
#
#   benchmarks/cuda_variants.sh OUTDIR "NAME:NVCC FLAGS" ["NAME:NVCC FLAGS" ...]
#   benchmarks/cuda_variants.sh runs/var "base:" "t512:-DSEQPAR_CUDA_THREADS=512"
set -uo pipefail
cd "$(dirname "$0")/.."
out=$1; shift
mkdir -p "$out"
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d ' .')
names=()
for spec in "$@"; do
  name=${spec%%:*}; flags=${spec#*:}; names+=("$name")
  mkdir -p "$out/$name"
  for src in kernels/cuda/*.cu tests/kernels/cuda/gpu_check/scan_gpu_check.cu; do
    # shellcheck disable=SC2086
    "$nvcc" -std=c++17 -O3 -Ikernels/include -gencode "arch=compute_$cc,code=sm_$cc" $flags \
      -c "$src" -o "$out/$name/$(basename "$src" .cu).o" &
  done
done
wait
for name in "${names[@]}"; do
  "$nvcc" -o "$out/$name/scan_gpu_check" "$out/$name"/*.o || { echo "variant $name: link failed"; continue; }
done
: >"$out/variants.jsonl"
for name in "${names[@]}"; do
  [ -x "$out/$name/scan_gpu_check" ] || continue
  echo "== variant $name"
  timeout 60 "$out/$name/scan_gpu_check" check | tail -n 1
  SEQPAR_VARIANT=$name timeout 60 "$out/$name/scan_gpu_check" bench --json "$out/variants.jsonl" >"$out/$name/bench.log" 2>&1 ||
    { echo "variant $name: bench failed"; tail -n 5 "$out/$name/bench.log"; }
done
python3 - "$out/variants.jsonl" <<'PY' | tee "$out/variants.txt"
import json, sys, collections
rows = collections.OrderedDict()
names = []
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["variant"] not in names:
        names.append(r["variant"])
    key = (r["dtype"], r["layout"], r["T"].bit_length() - 1, r["BD"])
    rows.setdefault(key, {})[r["variant"]] = r
print("fwd% / bwd% of copy bandwidth (det: deterministic forward %)")
print(f"{'dtype':9} {'layout':8} {'T':5} {'B*D':5} " + " ".join(f"{n:>18}" for n in names))
for (dt, lay, lt, bd), per in rows.items():
    cells = []
    for n in names:
        r = per.get(n)
        cells.append(f"{'-':>18}" if r is None else
                     f"{100*r['fwd_GBs']/r['copy_GBs']:4.0f}/{100*r['bwd_GBs']/r['copy_GBs']:3.0f} d{100*r['det_fwd_GBs']/r['copy_GBs']:3.0f}".rjust(18))
    print(f"{dt:9} {lay:8} 2^{lt:<3} {bd:<5} " + " ".join(cells))
PY
