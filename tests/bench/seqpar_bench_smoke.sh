#!/usr/bin/env bash
# seqpar-bench end to end: each subcommand's quick mode under mpirun -np 2 (psm on one rank)
# writes records that bench_results.py validates against the schema, with injected latency
# recorded in env.emulation, and a bad option is an error naming it.
#
#   seqpar_bench_smoke.sh SEQPAR_BENCH SOURCE_DIR PYTHON MPIRUN [MPIRUN ARGS...]
set -euo pipefail
bench=$1 source_dir=$2 python=$3
shift 3
mpirun=("$@")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

SEQPAR_COMM_DELAY_US=20 "${mpirun[@]}" -np 2 -x SEQPAR_COMM_DELAY_US "$bench" exchange --quick \
  --reps 2 --no-progress --json "$tmp/exchange.json" > /dev/null
"${mpirun[@]}" -np 2 "$bench" sp_scan --quick --tokens 4096 --json "$tmp/sp.json" > /dev/null
"$bench" psm --quick --max_tokens 1024 --max_chunks 16 --reps 1 --json "$tmp/psm.json" > /dev/null
"$python" "$source_dir/benchmarks/bench_results.py" validate "$tmp"/*.json || fail "schema"
"$python" - "$tmp" <<'PY' || fail "record contents"
import json, sys
ex = json.load(open(f"{sys.argv[1]}/exchange.json"))["records"]
assert {r["case"]["algo"] for r in ex} >= {"tree", "allgather", "ring", "blelloch", "auto"}
assert all(r["env"]["world_size"] == 2 and r["predicted"] > 0 for r in ex)
assert all(abs(r["env"]["emulation"]["latency_us"] - 20) < 1e-9 for r in ex)
assert all(r["median"] >= 20e-6 for r in ex if r["case"]["algo"] != "auto")  # one hop at least
psm = json.load(open(f"{sys.argv[1]}/psm.json"))["records"]
assert {r["bench"] for r in psm} == {"psm_inference", "psm_train"}
print("records ok:", len(ex), "exchange,", len(psm), "psm")
PY
if "$bench" exchange --bogus > "$tmp/err" 2>&1; then fail "a bad option was accepted"; fi
grep -q "unrecognised option '--bogus'" "$tmp/err" || fail "error does not name the option"
echo "seqpar-bench-smoke: OK"
