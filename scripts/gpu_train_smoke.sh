#!/usr/bin/env bash
# The training program on a GPU, for scripts/gpu_session.sh's train-smoke step:
#  1. every model family (manifold, gla, gated_deltanet, gated_deltanet with a 4-tap short
#     convolution, psm) trains 3 steps of the byte LM on
#     the CPU and on CUDA from the same seed (parameters are initialised on the CPU, then moved),
#     and the per-step losses must agree within 1e-4 relative (float32 on two devices: the
#     reduction orders differ, so the last digits do; an H200 agreed within 2e-7 on
#     2026-11-26, so 1e-4 leaves room for other GPUs and still catches a wrong kernel);
#  2. throughput on CUDA: tokens/s of a few steps at 2^20 tokens per sequence, per family, and
#     the peak memory the caching allocator handed out; gla and gated_deltanet also with the
#     recurrence over recomputed slices of 2^16 tokens (--matrix_recompute_tokens).
#
#   scripts/gpu_train_smoke.sh SEQPAR_TRAIN OUT_DIR
# SEQPAR_SMOKE_DEVICE=cpu compares the CPU with itself (a check of this script on a machine
# without a GPU).
set -uo pipefail
train=$1 out=$2
dev=${SEQPAR_SMOKE_DEVICE:-cuda}
python=${SEQPAR_PYTHON:-python3}
mkdir -p "$out"
small=(--task text --seq_len 4096 --batch 1 --d_model 64 --layers 2 --heads 4 --mlp_hidden 128
       --psm_chunk 64 --steps 3 --warmup 1 --lr 0.003 --log_every 1 --val_every 0
       --checkpoint_dir "" --sp 1 --seed 7 --threads 4)
fail=0
for model in manifold gla gated_deltanet gated_deltanet+conv psm; do
  extra=()
  [[ $model == *+conv ]] && extra=(--conv_size 4)
  for d in cpu "$dev"; do
    "$train" "${small[@]}" --model "${model%+conv}" "${extra[@]}" --device "$d" \
      --metrics "$out/${model}_$d.jsonl" >"$out/${model}_$d.log" 2>&1 ||
      { echo "FAIL $model on $d: exit $? ($out/${model}_$d.log)"; tail -n 3 "$out/${model}_$d.log"; fail=1; }
  done
  "$python" - "$out/${model}_cpu.jsonl" "$out/${model}_$dev.jsonl" "$model" "$dev" <<'PY' || fail=1
import json, sys
cpu, other, model, dev = sys.argv[1:]
def losses(p):
    try:
        return [json.loads(l)["loss"] for l in open(p) if '"loss"' in l]
    except OSError:
        return []
a, b = losses(cpu), losses(other)
worst = max((abs(x - y) / abs(x) for x, y in zip(a, b)), default=float("inf"))
ok = len(a) == len(b) == 3 and worst <= 1e-4
print(f"{'ok' if ok else 'FAIL'} {model}: losses cpu {[round(x, 5) for x in a]} {dev} "
      f"{[round(x, 5) for x in b]}, worst relative difference {worst:.1e}")
sys.exit(0 if ok else 1)
PY
done
[ "$dev" = cpu ] && exit $fail
for run in manifold gated_deltanet gla psm gated_deltanet+recompute gla+recompute; do
  model=${run%+*} extra=()
  [ "$run" != "$model" ] && extra=(--matrix_recompute_tokens 65536)
  "$train" --task text --seq_len 1048576 --batch 1 --d_model 128 --layers 2 --heads 4 \
    --mlp_hidden 256 --psm_chunk 256 --steps 4 --warmup 1 --log_every 1 --val_every 0 \
    --checkpoint_dir "" --sp 1 --seed 7 --model "$model" --device "$dev" "${extra[@]}" \
    --metrics "$out/${run}_speed.jsonl" >"$out/${run}_speed.log" 2>&1 ||
    { echo "FAIL $run at 2^20 tokens on $dev: exit $?"; tail -n 3 "$out/${run}_speed.log"; fail=1; continue; }
  "$python" - "$out/${run}_speed.jsonl" "$run" "$dev" <<'PY'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1]) if '"tokens_per_s"' in l]
mem = r[-1].get("peak_device_mib", r[-1].get("peak_host_mib"))
where = "device" if "peak_device_mib" in r[-1] else "host"
print(f"speed {sys.argv[2]}, 2^20 tokens, d_model 128, 2 layers, {sys.argv[3]}: "
      f"{r[-1]['tokens_per_s']:.0f} tokens/s (last of {len(r)} steps), peak {mem} MiB {where}")
PY
done
exit $fail
