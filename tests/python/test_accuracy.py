"""Accuracy at long T through the ops (docs/accuracy.md): benchmarks/accuracy_bench.py runs
torch.ops.seqpar.scan and, over a 3-rank gloo group, torch.ops.seqpar.sp_scan, forward and
backward, against a float64 reference; here its JSON is checked for
  * float32 / complex64 errors within a few float32 roundings at the long length, and
  * no growth: the long length's error at most 2x the short one's (+ one rounding).
The kernel-level version of this test runs per CPU target (tests/kernels/test_cpu_accuracy.cpp).
"""
import json
import os
import subprocess
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sp_common import find_library  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "benchmarks", "accuracy_bench.py")
U = 2.0 ** -24  # float32 unit roundoff

pytestmark = pytest.mark.skipif(find_library() is None,
                                reason="libseqpar.so not built (set SEQPAR_LIBRARY)")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_error_stays_at_float32_rounding_and_does_not_grow(device, tmp_path):
    out = tmp_path / "acc.json"
    env = dict(os.environ, SEQPAR_LIBRARY=find_library(), OMP_NUM_THREADS="1")
    env.pop("SEQPAR_SP_ALGO", None)
    ranks = "3" if device == "cpu" else "0"  # one GPU: no NCCL group of several ranks
    proc = subprocess.run([sys.executable, BENCH, "--device", device, "--ranks", ranks,
                           "--log2-t", "14", "20", "--dtypes", "float32", "--json", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    rows = json.loads(out.read_text())["results"]
    assert len(rows) == 4 * 2 * (2 if ranks == "3" else 1), proc.stdout
    by_key = {(r["decay"], r["ranks"], r["log2_t"]): r for r in rows}
    for (decay, ranks_, lt), row in by_key.items():
        errs = [row[k] for k in ("h", "h_last", "grad_a", "grad_b")]
        # grad_a is a product of two rounded values, complex outputs have two parts, and each
        # slice after the first starts from a rounded entering state: 4 roundings bound it
        # (float32 accumulation reached 1e-6 to 3e-5 here).
        assert max(errs) < 4 * U, (decay, ranks_, lt, row)
        if lt == 20:  # the worst output at 2^20 against the worst at 2^14
            short = by_key[(decay, ranks_, 14)]
            short_worst = max(short[k] for k in ("h", "h_last", "grad_a", "grad_b"))
            assert max(errs) <= 2 * short_worst + U, (decay, ranks_, short, row)
