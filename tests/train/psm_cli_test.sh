#!/usr/bin/env bash
# The psm model from the command line: `seqpar-train --config configs/quickstart.ini --model psm`
# with sp = 2 under mpirun -np 2 logs the same per-step losses (the metrics' "loss" fields) as
# sp = 1 on one rank with the same seed, within float tolerance; then generate mode streams
# from the sp = 2 run's checkpoint through the binary counter. Small overrides keep it short.
#
#   psm_cli_test.sh SEQPAR_TRAIN SOURCE_DIR MPIRUN [MPIRUN ARGS...]
set -euo pipefail
train=$1 source_dir=$2
shift 2
mpirun=("$@")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$source_dir"

common=(--config configs/quickstart.ini --model psm --seq_len 8192 --val_tokens 4096
        --steps 4 --warmup 2 --val_every 2 --save_every 4 --threads 1)
fail() { echo "FAIL: $*"; exit 1; }

"${mpirun[@]}" -np 2 "$train" "${common[@]}" --sp 2 --checkpoint_dir "$tmp/sp2" \
  --metrics "$tmp/sp2.jsonl" > "$tmp/sp2.out"
"${mpirun[@]}" -np 1 "$train" "${common[@]}" --sp 1 --checkpoint_dir "$tmp/sp1" \
  --metrics "$tmp/sp1.jsonl" > "$tmp/sp1.out"
python3 - "$tmp/sp1.jsonl" "$tmp/sp2.jsonl" <<'PY' || fail "sp = 2 losses differ from sp = 1"
import json, sys
one, two = ([json.loads(line) for line in open(p)] for p in sys.argv[1:3])
assert len(one) == len(two) == 4, (len(one), len(two))
for a, b in zip(one, two):
    for key in ("loss", "val_loss"):
        if key in a:
            rel = abs(a[key] - b[key]) / abs(a[key])
            print(f"step {a['step']} {key}: sp1 {a[key]:.7f} sp2 {b[key]:.7f} rel {rel:.1e}")
            assert rel < 1e-5, (a, b)
PY
out=$("$train" "${common[@]}" --sp 1 --checkpoint_dir "$tmp/sp2" --mode generate --resume latest \
  --prompt "GNU " --generate_tokens 40)
[[ "$out" == "GNU "* && ${#out} -ge 44 ]] || fail "generate output: '$out'"
echo "psm-cli-test: OK"
