#!/usr/bin/env bash
# One command for a GPU machine: builds what it needs against the PyTorch already installed
# there (no package registry is needed), runs every GPU check of seqpar in order of value,
# and writes one summary under --out. Every step runs under `timeout`; a step that fails or
# times out is recorded and the session goes on, so one broken part cannot hide the others.
#
#   scripts/gpu_session.sh [--out DIR] [--bundle FILE] [--quick] [--help]
#
# Steps (the summary names each one with its status, seconds and log):
#   build-kernels  nvcc builds kernels/cuda/*.cu and the torch-free check program
#                  (tests/kernels/cuda/gpu_check) for the device's architecture; registers and
#                  spills from ptxas go to ptxas.txt
#   build-lib      (in the background from the start) CMake builds libseqpar against this
#                  machine's PyTorch, CUDA on, tests/benchmarks off, in build-gpu/; with
#                  .gpu_deps/ present (scripts/gpu_deps.sh made it here; carry it along) it
#                  unpacks those Debian packages into build-gpu-deps/ and builds seqpar-train too
#   check          CUDA_LAUNCH_BLOCKING=1: every dtype x layout (channels 32/8 per CTA, time
#                  with 128-bit loads, vector phase, general strides) x forward/backward/summary,
#                  reverse, h0, T = 0, 1, deep tile chains, decay near 0 and near 1, caller
#                  workspace and per-call scratch, against a double-precision host reference
#   block-check    CUDA_LAUNCH_BLOCKING=1: the 2x2 block scan (cuda_block_scan.h) built on its own
#                  (tests/kernels/cuda/gpu_check/block_scan_gpu_check.cu with kernels/cuda/block_scan.cu)
#                  and run on the host emulator's cases (T = 0, 1, odd, many chunks, C = 1 and 64,
#                  reverse, strided layouts, optional operands, lower_triangular, decay near 0 and
#                  near 1, every dtype; tests/kernels/cuda/block_scan_check.h) plus T = 2^20 and
#                  2^16 sequences (not with --quick), against a float64 sequential reference
#   memcheck       compute-sanitizer memcheck on small multi-tile cases
#   stress         look-back stress: hundreds of calls on two streams over chains of up to
#                  8192 tiles; reports run-to-run bitwise differences
#   bench          forward/backward GB/s at T = 2^17, 2^20, 2^23, B*D = 1, 16, 256, 4096,
#                  float32, bfloat16 and complex64, both layouts, and % of a device copy of the same bytes,
#                  all timed as CUDA graphs (no launch gaps)
#   lib-abi        libseqpar.so exports none of libstdc++'s symbols (a statically linked
#                  libstdc++ copy crashed the first error message)
#   torch-smoke    the LibTorch ops on CUDA against the CPU op (launch-blocking), and
#                  sp_scan / sp_comm_check over a one-rank NCCL process group
#   chunk-check    scripts/gpu_chunk_check.py: the fused CUDA chunk kernels of gated DeltaNet,
#                  KDA and GLA (forward and backward, float32 / bfloat16 / float16 / float64, K, V in
#                  {64, 128}) through seqpar's functions against the CPU float64 ones
#   sp-cuda        seqpar.sp.scan, sp.chunk_gla and sp.chunk_gated_delta_rule on CUDA tensors,
#                  P = 2 and 4 ranks on the one GPU over gloo (NCCL refuses two ranks on one
#                  GPU), against one process: outputs, final states, all gradients
#                  (tests/python/sp_device_worker.py; the image has no MPI)
#   train-smoke    (needs .gpu_deps/) scripts/gpu_train_smoke.sh: every model family trains
#                  3 steps on the CPU and on CUDA with equal losses, then tokens/s at 2^20
#   pytest         tests/python/test_scan_cuda.py, tests/python/test_accuracy.py
#   pytest-block   the CUDA cases of tests/python/test_block_scan.py (the block scan's LibTorch
#                  CUDA path, forward and every gradient, against the CPU op in float64)
#   pytest-matrix-state  the CUDA cases of tests/python/test_matrix_state.py
#   pytest-packed  the CUDA cases of tests/python/test_packed_sequences.py (packed scan on the
#                  CUDA kernels' segments; packed matrix states per sequence)
#   torch-bench    benchmarks/cuda_scan_bench.py --quick (the op through PyTorch, baselines)
#   accuracy       benchmarks/accuracy_bench.py --device cuda: error against float64 at
#                  T = 2^14 .. 2^24, float32 and bfloat16 (docs/accuracy.md)
#   matrix-bench   benchmarks/matrix_state_bench.py --device cuda at T = 2^20: chunked GLA and
#                  gated DeltaNet, forward + backward, against a batched matmul and the
#                  per-step recurrence, peak memory (docs/matrix_state.md)
#   fla-bench      (needs .gpu_deps/wheels: scripts/gpu_deps.sh) benchmarks/fla_compare_bench.py:
#                  seqpar against flash-linear-attention's Triton kernels, forward + backward,
#                  bfloat16, at B = 1, T = 32768, H = 16, K = V = 128 and T = 2^20, H = 4,
#                  K = V = 64: time and peak memory of each (skips FLA, saying why, without
#                  Triton)
#   split-probe    benchmarks/split_long_probe.py: one long sequence cut into P pieces and scanned
#                  as many (summary, scan of the summaries, scan), against the direct op
#   profile        Nsight Compute (ncu) on the forward of the three shapes furthest from copy
#                  bandwidth (one long sequence; 16 channels contiguous; bfloat16 channels)
#   racecheck, synccheck
#                  compute-sanitizer's shared-memory race and barrier checks, same cases
#
# Output: DIR/summary.json (steps, device, every JSON record of the check program) and
# DIR/summary.txt (the tables, ready to paste into docs/cuda.md), plus one log per step.
# --bundle FILE also packs DIR into one .tar.gz (40-odd files, some named with '+': a remote
# runner that brings back a limited number of plain names, such as the device tool, brings
# back this one file; use --out outside the folder it returns and --bundle inside it).
# Without a GPU it stops at once with status 3. --quick skips the sanitizers, pytest and the profile;
# SEQPAR_GPU_SESSION_SKIP="pytest racecheck" skips the named steps; SEQPAR_GPU_SESSION_SECONDS
# caps the whole session (default 500).
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

out=runs/gpu_session
quick=0
bundle=
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --out=*) out=${1#--out=}; shift ;;
    --bundle) bundle=$2; shift 2 ;;
    --bundle=*) bundle=${1#--bundle=}; shift ;;
    --quick) quick=1; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_session: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  echo "gpu_session: no GPU found (nvidia-smi lists none); this script needs a CUDA device" >&2
  exit 3
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
python=${SEQPAR_PYTHON:-python3}
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
jobs=${SEQPAR_JOBS:-$(nproc)}
sanitizer=$(command -v compute-sanitizer || echo "$(dirname "$nvcc")/compute-sanitizer")
start=$(date +%s)
: >"$out/steps.tsv"

# The whole session keeps to SEQPAR_GPU_SESSION_SECONDS (default 500): a step gets at most
# what is left, and is skipped when under 15 s are.
deadline=$((start + ${SEQPAR_GPU_SESSION_SECONDS:-500}))

# step NAME SECONDS CMD...: runs CMD under timeout with its log in DIR/NAME.log.
step() {
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  case " ${SEQPAR_GPU_SESSION_SKIP:-} " in
    *" $name "*) printf '%s\t%s\t0\n' "$name" "skipped" >>"$out/steps.tsv"; echo "-- $name: skipped"; return 1 ;;
  esac
  local left=$((deadline - t0))
  [ $left -lt $limit ] && limit=$left
  if [ $limit -lt 15 ]; then
    printf '%s\t%s\t0\n' "$name" "skipped(deadline)" >>"$out/steps.tsv"
    echo "-- $name: skipped, session deadline"
    return 1
  fi
  echo "== $name (limit ${limit}s, at +$((t0 - start))s)"
  if declare -F "$1" >/dev/null; then
    # A shell function (timeout cannot run one): run it in a subshell under a watchdog.
    ( "$@" ) >"$out/$name.log" 2>&1 &
    local pid=$!
    ( sleep "$limit"; kill -TERM "$pid" 2>/dev/null ) &
    local dog=$!
    wait "$pid"
    local rc=$?
    kill "$dog" 2>/dev/null
    [ $rc -eq 143 ] && rc=124
  else
    timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
  fi
  local status=ok
  [ $rc -eq 124 ] || [ $rc -eq 137 ] && status=timeout
  [ $rc -ne 0 ] && [ "$status" = ok ] && status="failed($rc)"
  printf '%s\t%s\t%s\n' "$name" "$status" "$(($(date +%s) - t0))" >>"$out/steps.tsv"
  tail -n 25 "$out/$name.log"
  echo "-- $name: $status in $(($(date +%s) - t0))s"
  return $rc
}

# ---- device facts ----------------------------------------------------------------------
cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d ' .')
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader
  "$nvcc" --version | tail -n 2 | head -n 1
  "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
  echo "arch sm_$cc, $(nproc) CPUs"
} >"$out/device.txt" 2>&1
cat "$out/device.txt"

# ---- build-lib in the background ---------------------------------------------------------
build=$repo/build-gpu
# The trainer needs Boost.Program_options and nlohmann JSON, which the GPU image lacks: with
# .gpu_deps/*.deb (scripts/gpu_deps.sh) they are unpacked here, not installed.
trainer="-DSEQPAR_BUILD_TRAINER=OFF" more=true
if ls "$repo"/.gpu_deps/*.deb >/dev/null 2>&1; then
  deps=$repo/build-gpu-deps
  mkdir -p "$deps"
  for deb in "$repo"/.gpu_deps/*.deb; do dpkg-deb -x "$deb" "$deps"; done
  trainer="-DSEQPAR_BUILD_TRAINER=ON -DCMAKE_PREFIX_PATH=$deps/usr -DHWY_ROOT=$deps/usr"
  # A trainer that fails to build must not cost the library: built second, failure logged.
  more="cmake --build '$build' -j $jobs --target seqpar-train >'$out/build-train.log' 2>&1 || echo 'seqpar-train did not build: build-train.log' >&2"
fi
(
  step build-lib 300 bash -c "
    cmake -S '$repo' -B '$build' -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DSEQPAR_PYTHON='$python' -DSEQPAR_WITH_CUDA=ON -DSEQPAR_WITH_MPI=OFF \
      -DSEQPAR_BUILD_TESTS=OFF -DSEQPAR_BUILD_BENCHMARKS=OFF $trainer \
      -DCMAKE_CUDA_COMPILER='$nvcc' -DCMAKE_CUDA_ARCHITECTURES=$cc &&
    cmake --build '$build' -j $jobs --target seqpar && { $more; }" >/dev/null
) &
lib_pid=$!

# ---- build-kernels: torch-free, for this device -----------------------------------------
kb=$repo/build-gpu-kernels
mkdir -p "$kb"
build_kernels() {
  local pids=() fail=0
  for src in kernels/cuda/*.cu tests/kernels/cuda/gpu_check/scan_gpu_check.cu; do
    local o="$kb/$(basename "$src" .cu).o"
    "$nvcc" -std=c++17 -O3 -Ikernels/include -gencode "arch=compute_$cc,code=sm_$cc" \
      -Xptxas -v -c "$src" -o "$o" >"$o.ptxas" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || fail=1; done
  cat "$kb"/*.o.ptxas >"$out/ptxas.txt"
  [ $fail = 0 ] || { grep -h error "$kb"/*.o.ptxas; return 1; }
  "$nvcc" -o "$kb/scan_gpu_check" "$kb"/*.o || return 1
  echo "registers per thread (max): $(grep -ohE 'Used [0-9]+ registers' "$out/ptxas.txt" | awk '{print $2}' | sort -n | tail -n 1)"
  grep -E '[1-9][0-9]* bytes spill' "$out/ptxas.txt" | sort | uniq -c || echo "no spills"
}
step build-kernels 120 build_kernels
check=$kb/scan_gpu_check
json=$out/records.jsonl
: >"$json"

if [ -x "$check" ]; then
  step check 60 env CUDA_LAUNCH_BLOCKING=1 "$check" check --json "$json"
  step stress 60 "$check" stress --json "$json"
  step bench 90 "$check" bench --json "$json"
  if [ $quick = 0 ] && [ -x "$sanitizer" ]; then
    step memcheck 60 "$sanitizer" --tool memcheck --error-exitcode 9 "$check" sanitize
  fi
fi

# ---- block-check: the 2x2 block scan, torch-free, built apart from build-kernels ---------
# (one nvcc call for the check program and the block scan's source, so that a failure of
# either build cannot hide the other's results).
block_check() {
  local d=$kb/block_check
  mkdir -p "$d"
  "$nvcc" -std=c++17 -O3 -Ikernels/include -Ikernels/cuda -Itests/kernels/cuda \
    -gencode "arch=compute_$cc,code=sm_$cc" -o "$d/block_scan_gpu_check" \
    tests/kernels/cuda/gpu_check/block_scan_gpu_check.cu kernels/cuda/block_scan.cu || return 1
  local mode=full
  [ $quick = 1 ] && mode=quick
  CUDA_LAUNCH_BLOCKING=1 "$d/block_scan_gpu_check" $mode
}
step block-check 120 block_check

# ---- the LibTorch side ----------------------------------------------------------------
wait $lib_pid
lib=$build/src/libseqpar.so
# lib-abi: libseqpar.so must not export libstdc++'s own symbols (a toolchain that links
# libstdc++ statically did, and every message with a number in it crashed; src/CMakeLists.txt).
lib_abi() {
  local n
  n=$(nm -DC --defined-only "$lib" | grep -cE ' [TW] std::(locale|ios_base|basic_ostream)')
  echo "libstdc++ symbols exported by libseqpar.so: $n"
  [ "$n" = 0 ]
}
if [ -f "$lib" ]; then
  export SEQPAR_LIBRARY=$lib PYTHONUNBUFFERED=1
  step lib-abi 15 lib_abi
  step torch-smoke 60 env CUDA_LAUNCH_BLOCKING=1 "$python" scripts/gpu_session_torch.py
  step chunk-check 135 env CUDA_LAUNCH_BLOCKING=1 "$python" scripts/gpu_chunk_check.py
  step sp-cuda 150 bash -c 'for P in 2 4; do OMP_NUM_THREADS=1 "$0" -m torch.distributed.run \
      --nproc-per-node=$P --master-addr=127.0.0.1 --master-port=$((29600 + P)) \
      tests/python/sp_device_worker.py --device cuda || exit 1; done' "$python"
  if [ -x "$build/bin/seqpar-train" ]; then
    step train-smoke 150 env SEQPAR_PYTHON="$python" bash scripts/gpu_train_smoke.sh \
      "$build/bin/seqpar-train" "$out/train_smoke"
  fi
  if [ $quick = 0 ]; then
    step pytest 120 "$python" -m pytest -q --maxfail 10 --timeout 60 -p no:cacheprovider \
      tests/python/test_scan_cuda.py tests/python/test_accuracy.py -rs --junitxml "$out/pytest.xml"
    step pytest-block 60 "$python" -m pytest -q --maxfail 10 -p no:cacheprovider \
      tests/python/test_block_scan.py -k cuda -rs --junitxml "$out/pytest_block.xml"
    step pytest-matrix-state 90 "$python" -m pytest -q --maxfail 10 -p no:cacheprovider \
      tests/python/test_matrix_state.py -k cuda -rs --junitxml "$out/pytest_matrix_state.xml"
    step pytest-packed 90 "$python" -m pytest -q --maxfail 10 -p no:cacheprovider \
      tests/python/test_packed_sequences.py -k cuda -rs --junitxml "$out/pytest_packed.xml"
  fi
  step torch-bench 60 "$python" benchmarks/cuda_scan_bench.py --quick \
    --json "$out/torch_bench.json" --markdown "$out/torch_bench.md"
  step accuracy 90 "$python" benchmarks/accuracy_bench.py --device cuda --ranks 0 \
    --json "$out/accuracy.json"
  step matrix-bench 120 "$python" benchmarks/matrix_state_bench.py --device cuda --log2-t 20 \
    --json "$out/matrix_state_bench.json"
  if ls .gpu_deps/wheels/fla_core-*.whl >/dev/null 2>&1; then
    step fla-bench 180 bash -c '"$0" -m pip install -q --no-index --no-deps --target "$1/fla_site" \
        .gpu_deps/wheels/*.whl && PYTHONPATH="$1/fla_site" "$0" benchmarks/fla_compare_bench.py \
        --json "$1/fla_compare.json"' "$python" "$out"
  fi
  step split-probe 60 "$python" benchmarks/split_long_probe.py --json "$out/split_long_probe.jsonl"
fi

# ---- Nsight Compute on the shapes furthest from copy bandwidth -------------------------
# The forward of each, first scan_tile_kernel launch only, the sections that told the earlier
# profiles apart (docs/cuda.md): occupancy, stall reasons, memory. --clock-control none leaves
# the clocks as the bench ran them.
ncu=$(command -v ncu || ls "$(dirname "$nvcc")"/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
profile_shapes() {
  local spec dtype layout t bd
  for spec in float32:time:8388608:1 float32:channels:1048576:16 bfloat16:channels:131072:4096; do
    IFS=: read -r dtype layout t bd <<<"$spec"
    echo "## ncu: $dtype $layout T=$t B*D=$bd, forward"
    SEQPAR_BENCH_DTYPE=$dtype SEQPAR_BENCH_LAYOUT=$layout SEQPAR_BENCH_T=$t SEQPAR_BENCH_BD=$bd \
      "$ncu" --clock-control none -k regex:scan_tile_kernel -c 1 --section SpeedOfLight \
      --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis \
      --section WarpStateStats --section SchedulerStats "$check" bench || return 1
  done
}
if [ -x "$check" ] && [ $quick = 0 ] && [ -n "$ncu" ]; then
  step profile 90 profile_shapes
fi

# ---- the slower sanitizers last ---------------------------------------------------------
if [ -x "$check" ] && [ $quick = 0 ] && [ -x "$sanitizer" ]; then
  step racecheck 60 "$sanitizer" --tool racecheck --error-exitcode 9 "$check" sanitize
  step synccheck 45 "$sanitizer" --tool synccheck --error-exitcode 9 "$check" sanitize
fi

# ---- summary ---------------------------------------------------------------------------
"$python" - "$out" <<'EOF'
import json, os, sys
out = sys.argv[1]
steps = [dict(zip(("step", "status", "seconds"), l.rstrip("\n").split("\t")))
         for l in open(os.path.join(out, "steps.tsv")) if l.strip()]
records = [json.loads(l) for l in open(os.path.join(out, "records.jsonl")) if l.strip()]
device = open(os.path.join(out, "device.txt")).read().strip().splitlines()
json.dump({"device": device, "steps": steps, "records": records},
          open(os.path.join(out, "summary.json"), "w"), indent=1)
lines = ["device: " + " | ".join(device), "", "| step | status | s |", "|---|---|---|"]
lines += [f"| {s['step']} | {s['status']} | {s['seconds']} |" for s in steps]
chk = [r for r in records if r["mode"] == "check"]
if chk:
    bad = [r for r in chk if not r["ok"]]
    lines += ["", f"check: {len(chk)} cases, {len(bad)} failed"]
    for r in bad:
        lines.append(f"  FAIL {r['dtype']} B={r['B']} T={r['T']} D={r['D']} {r['mem']} rev={r['reverse']} "
                     f"{r['worst']} rel err {r['rel_err']:.2e} (tol {r['tol']:.1e})")
st = [r for r in records if r["mode"] == "stress"]
if st:
    lines += ["", "| stress | B | T | D | layout | calls | ref rel err | bitwise differing | same, deterministic mode |",
              "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['dtype']} | {r['B']} | {r['T']} | {r['D']} | {r['layout']} | {r['calls']} | "
              f"{r['ref_rel_err']:.1e} | {r['bitwise_differing']} | {r.get('det_bitwise_differing', '-')} |" for r in st]
bn = [r for r in records if r["mode"] == "bench"]
if bn:
    lines += ["", "| dtype | layout | T | B*D | copy GB/s | fwd GB/s | fwd % copy | bwd GB/s | bwd % copy | deterministic fwd % copy |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in bn:
        c = r["copy_GBs"]
        det = f"{100 * r['det_fwd_GBs'] / c:.0f}%" if "det_fwd_GBs" in r else "-"
        lines.append(f"| {r['dtype']} | {r['layout']} | 2^{r['T'].bit_length() - 1} | {r['BD']} | {c:.0f} | "
                     f"{r['fwd_GBs']:.0f} | {100 * r['fwd_GBs'] / c:.0f}% | {r['bwd_GBs']:.0f} | "
                     f"{100 * r['bwd_GBs'] / c:.0f}% | {det} |")
blk = os.path.join(out, "block-check.log")
if os.path.exists(blk):
    text = open(blk, errors="replace").read().splitlines()
    bad = [l for l in text if l.startswith("FAIL")]
    lines += ["", f"block-check: {sum(l.startswith('ok ') for l in text)} ok, {len(bad)} failed"]
    lines += ["  " + l for l in bad[:20]]
smoke = os.path.join(out, "train-smoke.log")
if os.path.exists(smoke):
    lines += ["", "train-smoke:"] + ["  " + l.rstrip() for l in open(smoke)
                                      if l.startswith(("ok ", "FAIL", "speed"))]
open(os.path.join(out, "summary.txt"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
echo "gpu_session: done in $(($(date +%s) - start))s; summary in $out/summary.txt"
if [ -n "$bundle" ]; then
  mkdir -p "$(dirname "$bundle")"
  tar -czf "$bundle" -C "$(dirname "$out")" "$(basename "$out")" && echo "gpu_session: bundle $bundle"
fi
! grep -qv $'\tok\t' "$out/steps.tsv"
