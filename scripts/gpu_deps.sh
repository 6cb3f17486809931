#!/usr/bin/env bash
# Fetches, on a machine with apt (this one), the Debian packages that a GPU machine without a
# package registry needs to build seqpar's trainer and seqpar-bench: Boost.Program_options,
# nlohmann JSON and Google Highway, as .deb files in .gpu_deps/ (ignored by git). They travel
# with the working tree (about 11 MB); scripts/gpu_session.sh unpacks them there with
# `dpkg-deb -x` into build-gpu-deps/ (nothing is installed system-wide) and then builds the
# trainer too, for its train-smoke step.
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
du -ch ./*.deb | tail -n 1
