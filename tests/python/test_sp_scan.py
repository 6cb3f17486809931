"""torch.ops.seqpar.sp_scan on torch.distributed gloo groups, launched as real multi-process jobs.

Each test starts a subprocess job (torchrun --nproc-per-node P, or the ranks directly for the
killed-rank test) running tests/python/sp_scan_worker.py, with a hard timeout so nothing can
hang. OMP_NUM_THREADS=1 keeps P ranks on a small machine. Set SEQPAR_LIBRARY to the built
libseqpar.so (the default is the newest build*/src/libseqpar.so of this repository).
"""
import os
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sp_common import find_library  # noqa: E402

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sp_scan_worker.py")

pytestmark = pytest.mark.skipif(find_library() is None,
                                reason="libseqpar.so not built (set SEQPAR_LIBRARY)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(extra=None):
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["SEQPAR_LIBRARY"] = find_library()
    env.pop("SEQPAR_SP_ALGO", None)
    env.update(extra or {})
    return env


def run_worker_under_torchrun(worker, nproc, passed):
    """Runs `worker` on nproc ranks under torchrun (300 s at most) and checks that it exited 0
    and that every rank printed "rank r: {passed} on {nproc} ranks"."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
           "--master-addr=127.0.0.1", f"--master-port={free_port()}", worker]
    proc = subprocess.run(cmd, env=rank_env(), capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    for r in range(nproc):
        assert f"rank {r}: {passed} on {nproc} ranks" in out, out[-3000:]


@pytest.mark.parametrize("nproc", [1, 2, 3, 4, 5, 8])
def test_sp_scan_matches_one_process_under_torchrun(nproc):
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
           "--master-addr=127.0.0.1", f"--master-port={free_port()}", WORKER, "check"]
    proc = subprocess.run(cmd, env=rank_env(), capture_output=True, text=True, timeout=240)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    for r in range(nproc):
        assert f"rank {r}: sp_scan checks passed on {nproc} ranks" in out, out[-3000:]


@pytest.mark.parametrize("mode", ["killed", "hang"])
def test_dead_or_hanging_rank_makes_the_others_fail_within_the_timeout(mode):
    """killed: rank 1 dies (SIGKILL), the others see the closed connection at once.
    hang: rank 1 never calls; the others hit seqpar's 3 s deadline (SEQPAR_COMM_TIMEOUT_MS)."""
    P, port = 3, free_port()
    procs = []
    t0 = time.monotonic()
    for r in range(P):
        env = rank_env({"RANK": str(r), "WORLD_SIZE": str(P), "LOCAL_RANK": str(r),
                        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                        "SEQPAR_COMM_TIMEOUT_MS": "3000"})
        procs.append(subprocess.Popen([sys.executable, WORKER, mode], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=90)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    elapsed = time.monotonic() - t0
    assert procs[1].returncode == (0 if mode == "hang" else -9), outs[1]
    for r in (0, 2):
        assert procs[r].returncode == 0, outs[r]
        line = next(l for l in outs[r].splitlines() if l.startswith(f"rank {r}: killed-"))
        assert "killed-ok" in line and "seqpar::comm c10d:gloo all_gather failed" in line, line
        if mode == "hang":
            assert "not complete within 3000 ms" in line, line
            seconds = float(line.split(" after ")[1].split(" s:")[0])
            assert 2.9 <= seconds < 8, line
    assert elapsed < 60, f"the job took {elapsed:.1f} s"
