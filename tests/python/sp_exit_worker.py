"""One rank of the clean-exit job, written as a user script is: everything at module level, so
the tensors (and their autograd graphs) are still alive when the interpreter shuts down.

It runs seqpar.sp.scan forward and backward in both directions on float64 (2, 5003, 3) and
float32 (1, 65536, 4, 2) tensors with uneven slices, plus sp.chunk_gla and
sp.chunk_gated_delta_rule, checks each against one process, then (unless argv[1] is
"no-destroy") calls dist.destroy_process_group() and sys.exit(0). Run by
scripts/sp_abort_repeat.sh (ctest sp_clean_exit), which repeats it and counts the runs in which a rank aborted at exit ("terminate called without an
active exception": a gloo worker thread of a group kept alive past destroy_process_group, found
still running during interpreter shutdown; docs/sequence_parallel.md, "Clean exits").
"""
import datetime
import glob
import os
import sys
import time

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import seqpar  # noqa: E402

destroy = (sys.argv[1] if len(sys.argv) > 1 else "destroy") != "no-destroy"
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
P, r = dist.get_world_size(), dist.get_rank()


def bounds(total):
    """Uneven slices: rank q holds a share proportional to q + 1."""
    weights = [q + 1 for q in range(P)]
    cuts = [total * sum(weights[:q]) // sum(weights) for q in range(P + 1)]
    return cuts[r], cuts[r + 1]


def close(got, want, tol, what):
    err = (got.double() - want.double()).abs().max().item() if got.numel() else 0.0
    assert err <= tol * max(1.0, want.abs().max().item()), f"rank {r}: {what}: error {err}"


g = torch.Generator().manual_seed(7)
results = []  # kept alive to the end, as a user's variables are
for shape, dtype, tol in (((2, 5003, 3), torch.float64, 1e-10),
                          ((1, 65536, 4, 2), torch.float32, 1e-4)):
    a = (0.5 + 0.5 * torch.rand(shape, generator=g, dtype=torch.float64)).to(dtype)
    b = (torch.rand(shape, generator=g, dtype=torch.float64) - 0.5).to(dtype)
    s, e = bounds(shape[1])
    for reverse in (False, True):
        full_a, full_b = a.clone().requires_grad_(), b.clone().requires_grad_()
        h_ref, last_ref = seqpar.scan(full_a, full_b, reverse=reverse)
        (h_ref.sum() + P * last_ref.sum()).backward()
        sa, sb = a[:, s:e].clone().requires_grad_(), b[:, s:e].clone().requires_grad_()
        h, last = seqpar.sp.scan(sa, sb, reverse=reverse)
        (h.sum() + last.sum()).backward()
        close(h, h_ref[:, s:e].detach(), tol, "h")
        close(last, last_ref.detach(), tol, "h_last")
        close(sa.grad, full_a.grad[:, s:e], tol, "grad a")
        close(sb.grad, full_b.grad[:, s:e], tol, "grad b")
        results += [h, last, sa, sb]

# The matrix-state ops across ranks, against one process.
B, T, H, K, V = 1, 203, 2, 8, 6
q, k = torch.randn(B, T, H, K, generator=g), torch.randn(B, T, H, K, generator=g)
k = torch.nn.functional.normalize(k, dim=-1)
v = torch.randn(B, T, H, V, generator=g)
gate = -torch.rand(B, T, H, generator=g)
beta = torch.rand(B, T, H, generator=g)
s, e = bounds(T)
o_ref, _ = seqpar.chunk_gated_delta_rule(q, k, v, gate, beta, chunk_size=16)
o, state = seqpar.sp.chunk_gated_delta_rule(
    *(x[:, s:e].clone().requires_grad_() for x in (q, k, v, gate, beta)),
    output_final_state=True, chunk_size=16)
o.sum().backward()
close(o, o_ref[:, s:e], 1e-4, "chunk_gated_delta_rule")
gk = -torch.rand(B, T, H, K, generator=g)
o_ref, _ = seqpar.chunk_gla(q, k, v, gk, chunk_size=16)
o2, _ = seqpar.sp.chunk_gla(*(x[:, s:e].clone().requires_grad_() for x in (q, k, v, gk)),
                            chunk_size=16)
o2.sum().backward()
close(o2, o_ref[:, s:e], 1e-4, "chunk_gla")
results += [o, state, o2]



def gloo_worker_threads():
    """Threads of this process that run a gloo group's work loop (Linux names them)."""
    count = 0
    for path in glob.glob("/proc/self/task/*/comm"):
        try:
            with open(path) as f:
                count += "gloo" in f.read()
        except OSError:
            pass  # the thread ended while we looked
    return count


if destroy:
    # A graph whose backward has not run yet: after destroy_process_group it must fail with a
    # clear error, not hang or crash.
    pending_a = torch.rand(1, 7, 2, generator=g, requires_grad=True)
    pending_h, _ = seqpar.sp.scan(pending_a, pending_a.detach())
    # The store of the group made again below: a fresh one (the first group's keys would be read
    # again), on a port the system picks, told to the other ranks while the first group lives.
    store = dist.TCPStore(os.environ["MASTER_ADDR"], 0, P, True, wait_for_workers=False,
                          timeout=datetime.timedelta(seconds=60)) if r == 0 else None
    port = [store.port if r == 0 else None]
    dist.broadcast_object_list(port, src=0)
    if r != 0:
        store = dist.TCPStore(os.environ["MASTER_ADDR"], port[0], P, False,
                              timeout=datetime.timedelta(seconds=60))
    threads_before = gloo_worker_threads()
    dist.destroy_process_group()
    # seqpar must not keep the group (and its worker threads) alive past destroy_process_group,
    # although the outputs above, and their autograd graphs, are still referenced.
    # A joined thread can stay listed in /proc for a moment while the kernel tears it down (1
    # run in 20 of this job saw one on a loaded machine, 2026-12-07), so the count gets a few
    # seconds to reach zero; a group that seqpar kept alive would keep its threads for good.
    if sys.platform.startswith("linux") and threads_before > 0:
        deadline = time.monotonic() + 5.0
        left = gloo_worker_threads()
        while left > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
            left = gloo_worker_threads()
        assert left == 0, f"rank {r}: {left} gloo worker threads alive 5 s after destroy_process_group"
    if P > 1:  # (one rank exchanges nothing)
        try:
            pending_h.sum().backward()
            raise AssertionError(f"rank {r}: backward on a destroyed group did not raise")
        except RuntimeError as e:
            assert "destroyed" in str(e), str(e)
    # A group made again works, under the same name as the destroyed one ("0": the default
    # group's counter restarts).
    dist.init_process_group("gloo", store=store, rank=r, world_size=P,
                            timeout=datetime.timedelta(seconds=60))
    a = torch.rand(1, 9, 2, generator=torch.Generator().manual_seed(3))
    mine = slice(9 * r // P, 9 * (r + 1) // P)
    h, last = seqpar.sp.scan(a[:, mine], a[:, mine])
    h_ref, last_ref = seqpar.scan(a, a)
    close(h, h_ref[:, mine], 1e-5, "h after re-init")
    close(last, last_ref, 1e-5, "h_last after re-init")
    results += [h, last]
    dist.destroy_process_group()
print(f"rank {r}: exit checks passed on {P} ranks", flush=True)
sys.exit(0)
