#!/usr/bin/env bash
# Installs what seqpar needs on a fresh Debian machine like CI's, and nothing when it is all
# present (each step checks first, so a second run takes a few seconds).
#
#   scripts/setup.sh            # Debian packages + CPU PyTorch (torch==2.13.0) for this python3
#   scripts/setup.sh --cuda     # also a venv with the CUDA build of PyTorch (torch==2.14.1),
#                               # used only to compile and link the CUDA path (no GPU needed)
#
# Environment: SEQPAR_CUDA_VENV (default /opt/seqpar/torch-cuda) is where --cuda puts its venv.
set -euo pipefail

want_cuda=0
for arg in "$@"; do
  case "$arg" in
    --cuda) want_cuda=1 ;;
    *) echo "setup.sh: unknown argument '$arg' (expected --cuda)" >&2; exit 2 ;;
  esac
done

# Debian packages: compiler toolchain, MPI, option parsing, JSON, test and benchmark frameworks,
# Google Highway (portable SIMD for the CPU engine), the aarch64 cross compiler, and qemu-user
# for the Arm build check of the kernels (scripts/aarch64_check.sh) and the runs on emulated
# x86-64 CPUs without AVX-512 (scripts/x86_emulated_check.sh).
debian_packages=(cmake ninja-build g++ openmpi-bin libopenmpi-dev libboost-program-options-dev
                 libgtest-dev libgmock-dev nlohmann-json3-dev libhwy-dev ccache
                 g++-aarch64-linux-gnu qemu-user)
missing=()
for p in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# PyTorch (CPU build) for the python3 on PATH: LibTorch's CMake package lives inside the wheel.
if ! python3 -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.13.0") else 1)' 2>/dev/null; then
  echo "setup: installing torch==2.13.0 (CPU build)"
  python3 -m pip install -q torch==2.13.0
fi
python3 -c 'import numpy, pytest' 2>/dev/null || python3 -m pip install -q numpy pytest
# scikit-build-core: the build backend of `pip install --no-build-isolation .` (pyproject.toml).
python3 -c 'import scikit_build_core' 2>/dev/null || python3 -m pip install -q scikit-build-core
# matplotlib: the PNG plots of benchmarks/bench_results.py (and their test).
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install -q matplotlib

if [ "$want_cuda" = 1 ]; then
  venv=${SEQPAR_CUDA_VENV:-/opt/seqpar/torch-cuda}
  if ! "$venv/bin/python" -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.14.1") else 1)' 2>/dev/null; then
    echo "setup: installing torch==2.14.1 (CUDA build) into $venv (several GB, a few minutes)"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q torch==2.14.1
  fi
fi
echo "setup: ok"
