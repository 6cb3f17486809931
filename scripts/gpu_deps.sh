#!/usr/bin/env bash
# Fetches, on a machine with apt (this one), the Debian packages that a GPU machine without a
# package registry needs to build seqpar's trainer and seqpar-bench: Boost.Program_options,
# nlohmann JSON and Google Highway, as .deb files in .gpu_deps/ (ignored by git). They travel
# with the working tree (about 11 MB); scripts/gpu_session.sh unpacks them there with
# `dpkg-deb -x` into build-gpu-deps/ (nothing is installed system-wide) and then builds the
# trainer too, for its train-smoke step. It also puts the pure-Python wheels of
# flash-linear-attention (fla-core) and einops in .gpu_deps/wheels/, which the session's
# fla-bench step installs with --no-index into a folder of its own (Triton comes with the GPU
# image's PyTorch).
#
#   scripts/gpu_deps.sh            # idempotent: downloads only what is missing
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(libboost1.74-dev libboost-program-options1.74-dev libboost-program-options1.74.0
          nlohmann-json3-dev libhwy-dev libhwy1)
mkdir -p .gpu_deps
cd .gpu_deps
missing=()
for p in "${packages[@]}"; do
  ls "${p}"_*.deb >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get download "${missing[@]}" 2>/dev/null || { apt-get update -qq && apt-get download "${missing[@]}"; }
fi
mkdir -p wheels
ls wheels/fla_core-*.whl >/dev/null 2>&1 || python3 -m pip download -q --no-deps -d wheels fla-core
ls wheels/einops-*.whl >/dev/null 2>&1 || python3 -m pip download -q --no-deps -d wheels einops
du -ch ./*.deb wheels/*.whl | tail -n 1
