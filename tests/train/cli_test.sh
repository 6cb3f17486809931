#!/usr/bin/env bash
# End-to-end checks of the seqpar-train program under mpirun with 2 sp ranks, on the
# quickstart config with small overrides: a run stopped at step 3 and resumed reproduces the
# uninterrupted run's losses (compared as printed in the metrics files), the last metrics
# record carries val_loss and unigram_loss, the summary prints both, a corrupted checkpoint
# stops the program with exit status 1 and is left untouched, generate mode runs, and
# launch/mpirun.sh passes a --progress_bar given on its command line once.
#
#   cli_test.sh SEQPAR_TRAIN SOURCE_DIR MPIRUN [MPIRUN ARGS...]
set -euo pipefail
train=$1 source_dir=$2
shift 2
mpirun=("$@")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$source_dir"

common=(--config configs/quickstart.ini --seq_len 4096 --d_model 32 --mlp_hidden 64 --layers 1
        --steps 6 --warmup 2 --val_every 3 --val_tokens 2048 --save_every 3 --threads 1)
fail() { echo "FAIL: $*"; exit 1; }

"${mpirun[@]}" -np 2 "$train" "${common[@]}" --checkpoint_dir "$tmp/a" --metrics "$tmp/a.jsonl" \
  > "$tmp/a.out"
grep -q "summary: .*val loss .*unigram baseline.* | peak memory [0-9]* MiB host" "$tmp/a.out" || fail "no summary line (with peak memory)"
"${mpirun[@]}" -np 2 "$train" "${common[@]}" --checkpoint_dir "$tmp/b" --metrics "$tmp/b.jsonl" \
  --stop_after 3 > /dev/null
"${mpirun[@]}" -np 2 "$train" "${common[@]}" --checkpoint_dir "$tmp/b" --metrics "$tmp/b.jsonl" \
  --resume latest > "$tmp/b.out"
grep -q "resumed from .*step_00000003.ckpt at step 3" "$tmp/b.out" || fail "did not resume at 3"
diff <(grep -o '"loss":[^,}]*' "$tmp/a.jsonl") <(grep -o '"loss":[^,}]*' "$tmp/b.jsonl") \
  || fail "resumed losses differ"
tail -1 "$tmp/a.jsonl" | grep -q '"unigram_loss"' || fail "last record lacks unigram_loss"
tail -1 "$tmp/a.jsonl" | grep -q '"val_loss"' || fail "last record lacks val_loss"
[[ $(wc -l < "$tmp/a.jsonl") -eq 6 ]] || fail "expected 6 metrics records"

ckpt="$tmp/a/step_00000006.ckpt"
cp "$ckpt" "$tmp/copy.ckpt"
size=$(stat -c %s "$ckpt")
printf '\x42' | dd of="$ckpt" bs=1 seek=$((size - 50)) conv=notrunc status=none
cp "$ckpt" "$tmp/corrupt.ckpt"
set +e
"${mpirun[@]}" -np 2 "$train" "${common[@]}" --checkpoint_dir "$tmp/a" --resume latest \
  > "$tmp/c.out" 2> "$tmp/c.err"
status=$?
set -e
[[ $status -ne 0 ]] || fail "corrupt checkpoint accepted"
grep -q "checksum mismatch" "$tmp/c.err" "$tmp/c.out" || fail "no checksum message: $(cat "$tmp/c.err")"
cmp -s "$ckpt" "$tmp/corrupt.ckpt" || fail "corrupt checkpoint was modified"

cp "$tmp/copy.ckpt" "$ckpt"
out=$("$train" "${common[@]}" --checkpoint_dir "$tmp/a" --mode generate --resume latest \
  --prompt "GNU " --generate_tokens 20)
[[ "$out" == "GNU "* ]] || fail "generate output does not start with the prompt"
# The launcher with its output piped, where it turns the progress bar off itself, and the
# same option on the command line: the program must get it once.
SEQPAR_BUILD_DIR=$(dirname "$(dirname "$train")") bash launch/mpirun.sh configs/quickstart.ini \
  --seq_len 4096 --d_model 32 --mlp_hidden 64 --layers 1 --steps 1 --val_every 0 \
  --save_every 0 --checkpoint_dir "$tmp/l" \
  --metrics "$tmp/l.jsonl" --progress_bar false > "$tmp/l.out" 2>&1 \
  || fail "launch/mpirun.sh with --progress_bar: $(tail -3 "$tmp/l.out")"
[[ $(wc -l < "$tmp/l.jsonl") -eq 1 ]] || fail "launcher run: expected 1 metrics record"
echo "losses: $(grep -o '"loss":[^,}]*' "$tmp/b.jsonl" | tr "\n" " ")"
echo "cli-test: OK"
