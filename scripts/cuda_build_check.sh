#!/usr/bin/env bash
# Checks a GPU user's build of seqpar on a machine without a GPU (CI): nothing here runs a
# kernel. Three steps, each stopping the script on failure:
#   1. torch-free kernel build: nvcc compiles every kernels/cuda/*.cu (and links the GPU
#      session's check program, tests/kernels/cuda/gpu_check) for each architecture
#      with -Ikernels/include only (proves kernels/ needs no LibTorch) and reports register
#      use and any spills from ptxas; checks in the PTX that only the float32 forward asks
#      for a minimum of CTAs per SM; then the kernel itself runs on a host emulation of CUDA
#      (tests/kernels/cuda/host_emulation) against a double-precision reference, and so do the
#      matrix-state chunk kernels (emu_chunk_test) and the 2x2 block scan (emu_block_scan_test,
#      whose cases the GPU session runs on a device as block_scan_gpu_check, linked here);
#   2. the whole project configured and built against the CUDA build of PyTorch
#      (torch 2.14.1+cu130 in a venv made by `scripts/setup.sh --cuda`) in build-cuda/;
#   3. load checks: the venv's Python loads build-cuda/src/libseqpar.so, the seqpar ops have
#      CPU and CUDA kernels registered, and a CPU scan runs through the CUDA-enabled library;
#      a small C++ program links against libseqpar and libtorch_cuda and runs on the CPU.
#
#   scripts/cuda_build_check.sh          # all steps
#   scripts/cuda_build_check.sh --kernels-only
#   scripts/cuda_build_check.sh --with-tests     # also the C++ tests and benchmarks
#
# Re-running is incremental (ninja + ccache); `rm -rf build-cuda build-kernels-cuda` starts over.
# The CMake workarounds the CUDA wheel needs are explained in cmake/seqpar_cuda_torch_workarounds.cmake.
set -euo pipefail
cd "$(dirname "$0")/.."

# SEQPAR_CUDA_VENV: venv holding the CUDA build of PyTorch (made by setup.sh --cuda).
venv=${SEQPAR_CUDA_VENV:-/opt/seqpar/torch-cuda}
# CUDA_HOME: toolkit whose nvcc compiles the kernels.
cuda_home=${CUDA_HOME:-/usr/local/cuda}
# SEQPAR_CUDA_ARCHS: CMake-style architecture list (same default as the project).
archs=${SEQPAR_CUDA_ARCHS:-80;90}
# SEQPAR_JOBS: parallel compile jobs (CI machines are small; nvcc is memory hungry).
jobs=${SEQPAR_JOBS:-2}

kernels_only=0
# The library, the trainer and the link check are what a GPU user's build needs; the C++ test
# and benchmark programs double the compile time on CI's 2 cores, so --with-tests adds them.
build_tests=OFF
for arg in "$@"; do
  case "$arg" in
    --kernels-only) kernels_only=1 ;;
    --with-tests) build_tests=ON ;;
    *) echo "cuda_build_check: unknown argument '$arg' (expected --kernels-only or --with-tests)" >&2; exit 2 ;;
  esac
done

nvcc="$cuda_home/bin/nvcc"
[ -x "$nvcc" ] || { echo "cuda_build_check: no nvcc at $nvcc (set CUDA_HOME)" >&2; exit 1; }
start=$(date +%s)

# ---- 1. kernels alone --------------------------------------------------------------------
echo "== [1/3] torch-free kernel build with $("$nvcc" --version | tail -n 2 | head -n 1)"
mkdir -p build-kernels-cuda
gencode=()
IFS=';' read -r -a arch_list <<<"$archs"
for a in "${arch_list[@]}"; do gencode+=(-gencode "arch=compute_${a},code=sm_${a}"); done
pids=()
for src in kernels/cuda/*.cu tests/kernels/cuda/gpu_check/scan_gpu_check.cu; do
  obj="build-kernels-cuda/$(basename "$src" .cu).o"
  log="build-kernels-cuda/$(basename "$src" .cu).ptxas.log"
  "$nvcc" -std=c++17 -O3 -Ikernels/include "${gencode[@]}" -Xptxas -v \
    -Xcompiler -Wall,-Wextra -c "$src" -o "$obj" >"$log" 2>&1 &
  pids+=($!)
  # Keep at most $jobs nvcc processes alive.
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 0.2; done
done
fail=0
for pid in "${pids[@]}"; do wait "$pid" || fail=1; done
for log in build-kernels-cuda/*.ptxas.log; do
  if grep -qE "error|warning" "$log"; then grep -E "error|warning" "$log" | head -n 20; fi
done
[ "$fail" = 0 ] || { echo "cuda_build_check: kernel compile failed (logs in build-kernels-cuda/)" >&2; exit 1; }
spills=$(cat build-kernels-cuda/*.ptxas.log | grep -E "[1-9][0-9]* bytes spill (stores|loads)" || true)
if [ -n "$spills" ]; then echo "note: ptxas reports spills:"; echo "$spills" | sort | uniq -c; fi
max_regs=$(grep -ohE "Used [0-9]+ registers" build-kernels-cuda/*.ptxas.log | awk '{print $2}' | sort -n | tail -n 1)
# The GPU session's check program (tests/kernels/cuda/gpu_check) links against the kernels alone.
"$nvcc" -o build-kernels-cuda/scan_gpu_check build-kernels-cuda/*.o ||
  { echo "cuda_build_check: scan_gpu_check link failed" >&2; exit 1; }
# The GPU session's block scan check (same cases as emu_block_scan_test) links against the
# block scan's object alone; built in a folder of its own so that the link above never sees it.
mkdir -p build-kernels-cuda/block_check
"$nvcc" -std=c++17 -O3 -Ikernels/include -Ikernels/cuda -Itests/kernels/cuda "${gencode[@]}" \
  -Xcompiler -Wall,-Wextra -c tests/kernels/cuda/gpu_check/block_scan_gpu_check.cu \
  -o build-kernels-cuda/block_check/block_scan_gpu_check.o >build-kernels-cuda/block_check/compile.log 2>&1 &&
  "$nvcc" -o build-kernels-cuda/block_check/block_scan_gpu_check build-kernels-cuda/block_check/block_scan_gpu_check.o \
    build-kernels-cuda/block_scan.o >>build-kernels-cuda/block_check/compile.log 2>&1 ||
  { cat build-kernels-cuda/block_check/compile.log; echo "cuda_build_check: block_scan_gpu_check build failed" >&2; exit 1; }
if grep -qE "error|warning" build-kernels-cuda/block_check/compile.log; then grep -E "error|warning" build-kernels-cuda/block_check/compile.log | head -n 20; fi
echo "   ok: $(ls kernels/cuda/*.cu | wc -l) files for sm_{${archs//;/,}}, scan_gpu_check and block_scan_gpu_check, max $max_regs registers/thread"
# Occupancy hints only where a GPU measured them: a __launch_bounds__ minimum of CTAs per SM
# (PTX .minnctapersm) on any kernel but the float32 forward and the bfloat16 forward with
# channels contiguous (the two measured with one) changes its registers; a minimum of
# 1 on every kernel once cost bfloat16 16 points of bandwidth unseen (docs/cuda.md).
echo "== [1a] occupancy hints in the PTX"
hints=$(for f in kernels/cuda/scan_*.cu; do
  "$nvcc" -std=c++17 -O3 -Ikernels/include -gencode arch=compute_90,code=compute_90 -ptx "$f" \
    -o build-kernels-cuda/"$(basename "$f" .cu)".ptx || exit 1
  awk '/^\.visible \.entry/ {name=$3} /^\.minnctapersm/ {print name, $2}' build-kernels-cuda/"$(basename "$f" .cu)".ptx
done) || { echo "cuda_build_check: PTX generation failed" >&2; exit 1; }
# Mangled: scan_tile_kernel<float, OpKind 0 (forward), ...> and
# scan_tile_kernel<__nv_bfloat16, OpKind 0, kCols 8 or 32, ...>.
stray=$(echo "$hints" | grep -v '^$' | grep -v 'scan_tile_kernelIfLNS2_6OpKindE0E' |
  grep -v -E 'scan_tile_kernelI13__nv_bfloat16LNS2_6OpKindE0ELi(8|32)E' || true)
[ -z "$stray" ] || { echo "cuda_build_check: CTA minimum on a kernel not measured with one:" >&2; echo "$stray" >&2; exit 1; }
echo "   ok: a CTA minimum only on the float32 forward and the bfloat16 channels forward ($(echo "$hints" | grep -c . || true) kernels, minimum $(echo "$hints" | awk '{print $2}' | sort -u | tr '\n' ' '))"
# The kernel's logic on the host: tests/kernels/cuda/host_emulation runs scan_tile_kernel with every
# CUDA thread as a fiber and checks it against a double-precision reference.
echo "== [1b] kernel logic on the host emulator (no GPU)"
c++ -std=c++17 -O1 -w -pthread -I"$cuda_home/include" -I"$cuda_home/include/cccl" -Ikernels/cuda \
  -Itests/kernels/cuda/host_emulation -Ikernels/include tests/kernels/cuda/host_emulation/emu_scan_test.cpp \
  -o build-kernels-cuda/emu_scan_test
./build-kernels-cuda/emu_scan_test quick >build-kernels-cuda/emu_scan_test.log ||
  { grep -E "FAIL" build-kernels-cuda/emu_scan_test.log; echo "cuda_build_check: emulated kernel tests failed" >&2; exit 1; }
echo "   ok: $(grep -c '^ok' build-kernels-cuda/emu_scan_test.log) emulated kernel checks passed"
# The real launch path with CTAs on several host threads (shuffled, randomly paused), in the
# default and the deterministic mode: concurrency of the look-back and of chained waits.
./build-kernels-cuda/emu_scan_test concurrent >build-kernels-cuda/emu_concurrent.log ||
  { grep -E "FAIL" build-kernels-cuda/emu_concurrent.log; echo "cuda_build_check: concurrent emulation failed" >&2; exit 1; }
echo "   ok: $(grep -c '^ok' build-kernels-cuda/emu_concurrent.log) concurrent emulated checks; $(grep '^concurrent:' build-kernels-cuda/emu_concurrent.log)"
# The fused chunk kernels of gated DeltaNet, KDA and GLA (forward, backward, finalize, through the
# entry points of cuda_matrix_state.h) against a float64 per-step recurrence and its adjoint.
c++ -std=c++17 -O2 -w -pthread -I"$cuda_home/include" -I"$cuda_home/include/cccl" -Ikernels/cuda \
  -Itests/kernels/cuda/host_emulation -Ikernels/include tests/kernels/cuda/host_emulation/emu_chunk_test.cpp \
  -o build-kernels-cuda/emu_chunk_test
./build-kernels-cuda/emu_chunk_test >build-kernels-cuda/emu_chunk_test.log ||
  { grep -E "FAIL" build-kernels-cuda/emu_chunk_test.log; echo "cuda_build_check: emulated chunk kernel tests failed" >&2; exit 1; }
echo "   ok: $(grep -c '^ok' build-kernels-cuda/emu_chunk_test.log) emulated chunk kernel checks passed (gated DeltaNet, KDA and GLA, forward and backward)"
# The 2x2 block scan (forward, backward, summary through cuda_block_scan.h) against a float64
# sequential reference and its adjoint (tests/kernels/cuda/block_scan_check.h).
c++ -std=c++17 -O2 -w -pthread -I"$cuda_home/include" -I"$cuda_home/include/cccl" -Ikernels/cuda \
  -Itests/kernels/cuda/host_emulation -Itests/kernels/cuda -Ikernels/include \
  tests/kernels/cuda/host_emulation/emu_block_scan_test.cpp -o build-kernels-cuda/emu_block_scan_test
./build-kernels-cuda/emu_block_scan_test >build-kernels-cuda/emu_block_scan_test.log ||
  { grep -E "FAIL" build-kernels-cuda/emu_block_scan_test.log; echo "cuda_build_check: emulated block scan tests failed" >&2; exit 1; }
echo "   ok: $(grep -c '^ok' build-kernels-cuda/emu_block_scan_test.log) emulated block scan checks passed (2x2 blocks: forward, backward, summary, all dtypes)"
[ "$kernels_only" = 1 ] && { echo "cuda_build_check: kernels ok in $(( $(date +%s) - start )) s"; exit 0; }

# ---- 2. whole project against the CUDA wheel ---------------------------------------------
echo "== [2/3] full build against the CUDA build of PyTorch in $venv"
if ! "$venv/bin/python" -c 'import torch, sys; sys.exit(0 if torch.version.cuda else 1)' 2>/dev/null; then
  bash scripts/setup.sh --cuda
fi
cmake -S . -B build-cuda -G Ninja \
  -DSEQPAR_PYTHON="$venv/bin/python" \
  -DSEQPAR_WITH_CUDA=ON \
  -DSEQPAR_BUILD_TESTS="$build_tests" -DSEQPAR_BUILD_BENCHMARKS="$build_tests" \
  -DCMAKE_CUDA_COMPILER="$nvcc" \
  -DCMAKE_CUDA_ARCHITECTURES="$archs" >build-kernels-cuda/configure-cuda.log 2>&1 ||
  { tail -n 40 build-kernels-cuda/configure-cuda.log; echo "cuda_build_check: configure failed" >&2; exit 1; }
grep -E "^--   " build-kernels-cuda/configure-cuda.log || true
cmake --build build-cuda -j "$jobs"

# ---- 3. load and link checks ---------------------------------------------------------------
echo "== [3/3] load and link checks"
# No GPU here: loading must still work, and both backends must be registered.
# PYTHONWARNINGS: the venv has no numpy, and torch warns about it on import.
PYTHONWARNINGS=ignore "$venv/bin/python" - <<'EOF'
import torch
torch.ops.load_library("build-cuda/src/libseqpar.so")
for op in ("scan", "scan_backward", "scan_summary", "matrix_chunk_forward", "matrix_chunk_backward"):
    for key in ("CPU", "CUDA"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"seqpar::{op}", key), (op, key)
a = torch.rand(2, 7, 3, dtype=torch.float64)
b = torch.randn(2, 7, 3, dtype=torch.float64)
h, h_last = torch.ops.seqpar.scan(a, b)
ref = torch.zeros(2, 3, dtype=torch.float64)
for t in range(7):
    ref = a[:, t] * ref + b[:, t]
assert torch.allclose(h_last, ref), "CPU scan through the CUDA-enabled library is wrong"
print(f"   ok: libseqpar.so loads in torch {torch.__version__}, CPU and CUDA kernels registered"
      f" (cuda available: {torch.cuda.is_available()})")
EOF

# A C++ program linked the way a user's would be, with no driver on this machine and no
# extra linker flags (libtorch_cuda reaches the nvidia pip libraries through its RUNPATH).
torch_dir=$(PYTHONWARNINGS=ignore "$venv/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
cat >build-cuda/link_check.cpp <<'EOF'
// Links against libseqpar and LibTorch (CUDA build) and runs a CPU scan.
#include <seqpar/scan.h>
#include <torch/torch.h>
#include <iostream>
int main() {
  auto a = torch::full({1, 4, 2}, 0.5);
  auto b = torch::ones({1, 4, 2});
  auto [h, h_last] = seqpar::scan(a, b);
  const double expect = 1.875;  // 1, 1.5, 1.75, 1.875
  if (std::abs(h_last[0][0].item<double>() - expect) > 1e-6) return 1;
  std::cout << "   ok: C++ program linked against libseqpar + libtorch_cuda runs\n";
  return 0;
}
EOF
std_flag=-std=c++20
PYTHONWARNINGS=ignore "$venv/bin/python" -c 'import torch, sys; v = tuple(map(int, torch.__version__.split("+")[0].split(".")[:2])); sys.exit(0 if v >= (2, 14) else 1)' ||
  std_flag=-std=c++17
abi=$(PYTHONWARNINGS=ignore "$venv/bin/python" -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
c++ $std_flag -O1 -D_GLIBCXX_USE_CXX11_ABI="$abi" build-cuda/link_check.cpp -o build-cuda/link_check \
  -Isrc/include -I"$torch_dir/include" -I"$torch_dir/include/torch/csrc/api/include" \
  -Lbuild-cuda/src -lseqpar -L"$torch_dir/lib" -ltorch -ltorch_cpu -ltorch_cuda -lc10 -lc10_cuda \
  -Wl,-rpath,"$PWD/build-cuda/src:$torch_dir/lib"
./build-cuda/link_check

echo "cuda_build_check: ok in $(( $(date +%s) - start )) s"
