#!/usr/bin/env bash
# `pip install --no-build-isolation .` from the repository root, into a fresh virtual
# environment that sees the installed PyTorch (--system-site-packages), then `import seqpar`
# from another directory: the library is found inside the package and scans correctly.
#   pip_install_check.sh REPO WORK_DIR [PYTHON]     (PYTHON: the one with torch; python3)
set -euo pipefail
repo=$1 work=$2 python=${3:-python3}
rm -rf "$work/venv"
mkdir -p "$work"
"$python" -m venv --system-site-packages "$work/venv"
"$work/venv/bin/pip" install -q --no-build-isolation --no-deps "$repo"
cd "$work"
"$work/venv/bin/python" - <<'PY'
import os, torch, seqpar
path = seqpar.library_path()
assert os.sep + os.path.join("site-packages", "seqpar", "lib") in path, path
g = torch.Generator().manual_seed(0)
a = 0.5 + 0.5 * torch.rand(2, 777, 3, generator=g, dtype=torch.float64)
b = torch.randn(2, 777, 3, generator=g, dtype=torch.float64)
h, h_last = seqpar.scan(a, b)
ref, s = torch.empty_like(a), torch.zeros(2, 3, dtype=torch.float64)
for t in range(a.shape[1]):
    s = a[:, t] * s + b[:, t]
    ref[:, t] = s
assert torch.allclose(h, ref, rtol=1e-12, atol=1e-12) and torch.allclose(h_last, s)
print("ok: pip-installed seqpar from", path, "on the", seqpar.cpu_capability(), "target")
PY
