#!/usr/bin/env bash
# seqpar-bench end to end: each subcommand's quick mode under mpirun -np 2 (psm on one rank,
# local_scan alone, and refused under -np 2) writes records that bench_results.py validates
# against the schema, with injected latency recorded in env.emulation, and a bad option is an
# error naming it.
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
"$bench" local_scan --quick --no-progress --json "$tmp/local_scan.json" > /dev/null
"${mpirun[@]}" -np 2 "$bench" train_step --quick --json "$tmp/train_step.json" > /dev/null
if "${mpirun[@]}" -np 2 "$bench" local_scan --quick > "$tmp/err" 2>&1; then
  fail "local_scan ran with 2 ranks"
fi
grep -q "measures one process" "$tmp/err" || fail "local_scan under -np 2: no clear error"
"$bench" local_scan --quick --bd 3 --no-progress --json "$tmp/local_scan_bd.json" > /dev/null
if "$bench" local_scan --quick --bd 0 > "$tmp/err" 2>&1; then fail "local_scan took --bd 0"; fi
grep -q -- "--bd must be" "$tmp/err" || fail "local_scan --bd 0: no clear error"
"$bench" block_scan --quick --lower --no-progress --json "$tmp/block_scan.json" > /dev/null
if "$bench" block_scan --quick --shapes 4x0x2 > "$tmp/err" 2>&1; then fail "block_scan took 4x0x2"; fi
grep -q -- "--shapes" "$tmp/err" || fail "block_scan --shapes 4x0x2: no clear error"
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
bs = json.load(open(f"{sys.argv[1]}/block_scan.json"))["records"]
assert {(r["bench"], r["case"]["pass"]) for r in bs} == {("block_scan", "forward"),
                                                         ("block_scan", "backward")}, bs
assert all(r["bytes_moved"] > 0 and r["case"]["lower_triangular"] for r in bs), bs
ls = json.load(open(f"{sys.argv[1]}/local_scan.json"))["records"]
assert {r["bench"] for r in ls} == {"local_scan"}
assert {r["case"]["pass"] for r in ls} == {"forward", "backward", "summary"}
assert {r["case"]["batch_x_channels"] for r in ls} == {1, 256}
assert {r["case"]["layout"] for r in ls} == {"channels", "time"}
bd = json.load(open(f"{sys.argv[1]}/local_scan_bd.json"))["records"]
assert {r["case"]["batch_x_channels"] for r in bd} == {3} and len(bd) == 6, bd
for r in ls:
    streams = {"forward": 3, "backward": 5, "summary": 2}[r["case"]["pass"]]  # float32: 4 bytes
    assert r["bytes_moved"] == streams * 4 * r["case"]["batch_x_channels"] * r["case"]["T"] > 0, r
    assert r["roofline_gbps"] > 0 and r["extra"]["pct_roofline"] > 0
    assert (r["extra"]["op_gbs"] > 0) if r["case"]["pass"] != "summary" else "op_gbs" not in r["extra"]
    assert r["repeats"] == 2 and r["env"]["world_size"] == 1
    assert ("log_space_gbs" in r["extra"]) == (r["case"]["pass"] == "forward")
tr = json.load(open(f"{sys.argv[1]}/train_step.json"))["records"]
assert [r["case"]["seq_len"] for r in tr] == [1024, 2048]
for r in tr:
    x = r["extra"]
    assert r["bench"] == "train_step" and r["case"]["P"] == 2 and r["env"]["sp_size"] == 2, r
    assert x["tokens_per_s"] > 0 and x["peak_rss_mib"] > 0 and r["median"] > 0
    assert set(x["shares"]) == {"scan", "matmul", "comm", "other"}
    assert abs(sum(x["shares"].values()) - 1) < 1e-6 and x["shares"]["scan"] > 0, x["shares"]
print("records ok:", len(ex), "exchange,", len(psm), "psm,", len(ls), "local_scan,", len(tr),
      "train_step")
PY
if "$bench" exchange --bogus > "$tmp/err" 2>&1; then fail "a bad option was accepted"; fi
grep -q "unrecognised option '--bogus'" "$tmp/err" || fail "error does not name the option"
echo "seqpar-bench-smoke: OK"
