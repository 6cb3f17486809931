#!/usr/bin/env bash
# The test command (README.md; .ci/run calls it). On a fresh Debian machine it installs what
# is missing, builds seqpar, checks that the CUDA path compiles and links against the CUDA
# build of PyTorch (no GPU needed), then runs every test through ctest: the kernel tests (once
# per CPU target, on qemu-emulated CPUs without AVX-512 or AVX, and cross-built for aarch64
# under qemu), the C++ API tests, the find_package consumer, the MPI tests for
# P = 1, 2, 3, 4, 5, 8, the torchrun/gloo tests, the training tests and the pytest suite.
# ctest's summary is the last thing printed.
#
#   scripts/test.sh               # everything
#   SEQPAR_SKIP_CUDA_CHECK=1 scripts/test.sh   # skip the CUDA build check (saves minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/build.sh
if [ "${SEQPAR_SKIP_CUDA_CHECK:-0}" != 1 ]; then
  bash scripts/setup.sh --cuda
  bash scripts/cuda_build_check.sh
fi
echo "== build and CUDA check took $(( $(date +%s) - start )) s; running ctest"
# OMP_NUM_THREADS is left alone for the single-process tests (they exercise the threaded
# kernels); the MPI tests set it to 1 per rank themselves.
ctest --test-dir "${SEQPAR_BUILD_DIR:-build}" --output-on-failure --timeout 900
