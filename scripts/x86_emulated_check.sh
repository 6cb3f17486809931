#!/usr/bin/env bash
# Runs what this build made on x86-64 CPUs other than the one it was built on, emulated by
# qemu-user (`qemu-x86_64 -cpu MODEL`), with no SEQPAR_CPU_CAPABILITY cap: the dispatcher must
# find the best target by itself, and nothing outside the dispatched kernels may use an
# instruction the CPU lacks (a build made on an AVX-512 machine and run elsewhere would die
# with SIGILL). Two CPU models:
#   EPYC-Rome  AMD Zen 2: AVX2 and FMA, no AVX-512 (the CPU of the portability report)  -> avx2
#   Nehalem    x86-64-v2: SSE4.2, no AVX                                                  -> scalar
# On each: the kernel tests (test_cpu_kernels, less the long accuracy tests that ctest runs
# natively per target), and a two-rank seqpar-train run under mpirun, each rank emulated,
# whose header must name the expected target and whose losses must match a native run capped
# to the same target. On EPYC-Rome also the Python module (Python and LibTorch emulated too)
# must pick avx2, and with SEQPAR_X86_EMULATED_PYTEST=1 the op tests (tests/python/test_scan.py)
# run there, about 3 minutes more. qemu's TCG has no AVX-512, so the avx512 target is not run here: it
# runs natively where the CPU has it. Timings under emulation mean nothing; this checks that
# the code runs and gives the right numbers. qemu-user comes from scripts/setup.sh.
#
#   scripts/x86_emulated_check.sh BUILD_DIR PYTHON [MPIRUN ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(realpath "$1") python=$2
shift 2
mpirun=("$@")
[ ${#mpirun[@]} -gt 0 ] || mpirun=(mpirun --oversubscribe --allow-run-as-root --bind-to none)
command -v qemu-x86_64 >/dev/null || { echo "x86_emulated_check: qemu-x86_64 missing; scripts/setup.sh installs it" >&2; exit 1; }
# qemu-user runs ELF files only: resolve a launcher script (a pyenv shim) to the interpreter
# (sys.executable, not its realpath, which would leave a venv).
python=$("$python" -c 'import sys; print(sys.executable)')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# qemu warns once per CPU feature its TCG lacks (clzero, xsaves, ...); those are not ours.
quiet() { grep -v "TCG doesn't support requested feature" || true; }
fail() { echo "x86_emulated_check: FAIL: $*"; exit 1; }

train_args=(--config configs/quickstart.ini --seq_len 4096 --d_model 32 --mlp_hidden 64 --layers 1
            --steps 3 --warmup 2 --val_every 3 --val_tokens 2048 --threads 1 --progress_bar false)
# Open MPI's shared-memory transport copies between ranks with process_vm_readv, which
# qemu-user does not implement; its copy-in/copy-out mode works.
mpi_env=(-x OMP_NUM_THREADS=1 --mca btl_vader_single_copy_mechanism none)

# The packed-sequence kernel tests but the degenerate bounds take minutes under qemu; they run
# natively on every x86 target in ctest (kernels_target_*), as the long accuracy tests do.
heavy_segments='CpuKernelsSegments.EveryDtypeLayoutAndThreadCount:CpuKernelsSegments.TimeContiguousTiles:CpuKernelsSegments.ThousandRandomSegments:CpuKernelsSegments.WideRows'

check_model() {  # check_model QEMU_CPU_MODEL EXPECTED_TARGET (in a subshell: fail exits it)
  local model=$1 want=$2 log=$tmp/$1.log
  local emu=(qemu-x86_64 -cpu "$model")
  echo "== $model (expecting the '$want' target): test_cpu_kernels"
  env -u SEQPAR_CPU_CAPABILITY SEQPAR_EXPECT_TARGET="$want" SEQPAR_EXPECT_TARGET_SUPPORTED=1 \
    "${emu[@]}" "$build/tests/kernels/test_cpu_kernels" --gtest_brief=1 \
    --gtest_filter="-LongSequences/CpuAccuracy.*:$heavy_segments" > "$log" 2>&1 ||
    { quiet < "$log"; fail "test_cpu_kernels on $model"; }
  quiet < "$log" | tail -3

  echo "== $model: seqpar-train, 2 ranks, each under qemu, against a native run capped to $want"
  env -u SEQPAR_CPU_CAPABILITY "${mpirun[@]}" "${mpi_env[@]}" -np 2 "${emu[@]}" \
    "$build/bin/seqpar-train" "${train_args[@]}" --metrics "$tmp/$model.jsonl" > "$log" 2>&1 \
    || { quiet < "$log"; fail "seqpar-train on $model"; }
  quiet < "$log"
  grep -q "CPU kernels $want," "$log" || fail "seqpar-train on $model did not pick $want"
  SEQPAR_CPU_CAPABILITY=$want "${mpirun[@]}" "${mpi_env[@]}" -np 2 "$build/bin/seqpar-train" \
    "${train_args[@]}" --metrics "$tmp/native-$model.jsonl" > /dev/null
  # The same seqpar kernels run in both; LibTorch's own kernels (matmuls, softmax) pick their
  # AVX2 or AVX-512 code by the CPU, so the losses may differ by float32 rounding, not more.
  "$python" - "$tmp/$model.jsonl" "$tmp/native-$model.jsonl" <<'EOF' || fail "losses on $model differ from native"
import json, sys
emulated, native = ([json.loads(line) for line in open(p)] for p in sys.argv[1:])
assert len(emulated) == len(native) == 3, (len(emulated), len(native))
for e, n in zip(emulated, native):
    for key in ("loss", "val_loss"):
        if key in n:
            assert abs(e[key] - n[key]) <= 1e-5 * abs(n[key]), (key, e, n)
print("losses match the native run:", [round(r["loss"], 6) for r in emulated])
EOF
}

# The two CPU models run side by side (one core each); their reports print in turn.
pids=()
for model_target in EPYC-Rome:avx2 Nehalem:scalar; do
  (check_model "${model_target%%:*}" "${model_target##*:}") > "$tmp/${model_target%%:*}.report" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=1
done
cat "$tmp/EPYC-Rome.report" "$tmp/Nehalem.report"
[ $status = 0 ] || exit 1

echo "== EPYC-Rome: the Python module, Python and LibTorch under qemu"
export SEQPAR_LIBRARY="$build/src/libseqpar.so"
py_emu=(env -u SEQPAR_CPU_CAPABILITY PYTHONPATH=python qemu-x86_64 -cpu EPYC-Rome "$python")
"${py_emu[@]}" -c "import seqpar; seqpar.load_library(); c = seqpar.cpu_capability(); \
print('seqpar.cpu_capability():', c); assert c == 'avx2'" > "$tmp/py.log" 2>&1 \
  || { quiet < "$tmp/py.log"; fail "the Python module on EPYC-Rome did not pick avx2"; }
quiet < "$tmp/py.log"
# The op tests under emulation take about 3 minutes: opt-in. Tests that start a second Python
# process are left out, since qemu-user runs only this process and the child would run
# natively (the cap tests run natively in ctest's pytest_scan).
if [ "${SEQPAR_X86_EMULATED_PYTEST:-0}" = 1 ]; then
  echo "== EPYC-Rome: tests/python/test_scan.py under qemu"
  "${py_emu[@]}" -m pytest -q -p no:cacheprovider -k "not cpu_capability" tests/python/test_scan.py \
    > "$tmp/py.log" 2>&1 || { quiet < "$tmp/py.log"; fail "test_scan.py on EPYC-Rome"; }
  quiet < "$tmp/py.log" | tail -1
fi
echo "x86_emulated_check: OK"
