"""One rank of the sequence-parallel scan tests; run under torchrun by test_sp_scan.py.

Every rank builds the same full problem from a fixed seed, takes its slice, and checks
torch.ops.seqpar.sp_scan (forward and backward) against one process scanning the whole sequence
with a plain float64 loop. The gloo group is a torch.distributed group, so this exercises the
c10d communicator: group lookup by name, all_gather of the header, the tree's send/recv, the
all-gather algorithm, all_reduce and broadcast. Any failure raises, the rank exits non-zero and
torchrun reports the job as failed.

Modes (argv[1]): "check" (the default) runs the checks; "killed" is used by the killed-rank
test, which launches the ranks itself (not under torchrun, whose agent would stop the survivors).
"""
import datetime
import os
import signal
import sys
import time

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sp_common import load_seqpar, reference_scan, slice_lengths  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "python"))
import seqpar.sp  # noqa: E402  (seqpar.sp.block_scan; the library is the one load_seqpar loads)


def check_case(group, split, reverse, with_h0, algo, dtype, tol, via="environment"):
    """via: how algo is chosen, "environment" (SEQPAR_SP_ALGO, the op's algo left at "auto")
    or "argument" (the op's algo argument, SEQPAR_SP_ALGO unset)."""
    P, r = dist.get_world_size(group), dist.get_rank(group)
    lengths = slice_lengths(split, P)
    start, total = sum(lengths[:r]), sum(lengths)
    g = torch.Generator().manual_seed(1234)
    shape = (2, total, 3, 4)
    a = 0.6 + 0.35 * torch.rand(shape, generator=g, dtype=torch.float64)
    b = torch.rand(shape, generator=g, dtype=torch.float64) - 0.5
    h0 = torch.rand((2, 3, 4), generator=g, dtype=torch.float64) - 0.5
    w = torch.rand(shape, generator=g, dtype=torch.float64) - 0.5
    v = torch.rand((2, 3, 4), generator=g, dtype=torch.float64) - 0.5
    if dtype.is_complex:
        a = torch.polar(a, 0.3 * torch.rand(shape, generator=g, dtype=torch.float64))
        b = torch.complex(b, torch.rand(shape, generator=g, dtype=torch.float64) - 0.5)
        h0, w, v = torch.complex(h0, 0.5 * h0), torch.complex(w, w.flip(1)), torch.complex(v, -v)

    ra, rb, rh0 = (x.clone().requires_grad_() for x in (a, b, h0))
    ref_h, ref_last = reference_scan(ra, rb, rh0 if with_h0 else None, reverse)
    ref_loss = (ref_h * w).sum() + (ref_last * v).sum() * (P * (P + 1) / 2)
    ref_loss.real.backward()

    sa = a[:, start:start + lengths[r]].to(dtype).clone().requires_grad_()
    sb = b[:, start:start + lengths[r]].to(dtype).clone().requires_grad_()
    sh0 = h0.to(dtype).clone().requires_grad_()
    if via == "environment":
        os.environ["SEQPAR_SP_ALGO"] = algo
        h, h_last = torch.ops.seqpar.sp_scan(sa, sb, sh0 if with_h0 else None, reverse,
                                             group.group_name)
    else:
        os.environ.pop("SEQPAR_SP_ALGO", None)
        h, h_last = torch.ops.seqpar.sp_scan(sa, sb, sh0 if with_h0 else None, reverse,
                                             group.group_name, algo=algo)
    loss = (h * w[:, start:start + lengths[r]].to(dtype)).sum() + (h_last * v.to(dtype)).sum() * (r + 1)
    loss.real.backward()

    def close(got, want, what):
        assert got.shape == want.shape, (what, got.shape, want.shape)
        if got.numel() == 0:
            return
        err = (got.to(want.dtype) - want).abs().max().item()
        scale = max(1.0, want.abs().max().item())
        assert err <= tol * scale, f"{what} on rank {r} ({split}, reverse={reverse}, {algo}, {dtype}): max error {err}"

    sl = slice(start, start + lengths[r])
    close(h.detach(), ref_h.detach()[:, sl], "h")
    close(h_last.detach(), ref_last.detach(), "h_last")
    close(sa.grad, ra.grad[:, sl], "grad_a")
    close(sb.grad, rb.grad[:, sl], "grad_b")
    if with_h0:
        first = P - 1 if reverse else 0
        if r == first:
            close(sh0.grad, rh0.grad, "grad_h0")
        else:
            assert torch.count_nonzero(sh0.grad) == 0, "grad_h0 must be zero off the first rank"


def reference_block_scan(A, b, h0, reverse):
    """h_t = A_t h_{t-1} + b_t as a plain loop over 2x2 blocks (differentiable)."""
    state = torch.zeros_like(b[:, 0] if b.shape[1] else b.sum(1)) if h0 is None else h0
    outs = [None] * b.shape[1]
    for t in (range(b.shape[1] - 1, -1, -1) if reverse else range(b.shape[1])):
        state = (A[:, t] @ state.unsqueeze(-1)).squeeze(-1) + b[:, t]
        outs[t] = state
    return (torch.stack(outs, 1) if outs else torch.zeros_like(b)), state


def check_block_case(group, split, reverse, with_h0, lower, algo, dtype, tol):
    """seqpar.sp.block_scan against the float64 loop over the whole sequence: h, the global
    h_last and the gradients of A, b and h0 (the loss weights h_last differently per rank, so
    the summed gradient of the replicated h_last is checked too). A holds oscillators of radius
    0.95-0.999, or the lower-triangular second-order map with garbage in A[..., 0, 1]."""
    P, r = dist.get_world_size(group), dist.get_rank(group)
    lengths = slice_lengths(split, P)
    start, total = sum(lengths[:r]), sum(lengths)
    g = torch.Generator().manual_seed(99)
    B, C = 2, 3
    th = torch.rand(B, total, C, generator=g, dtype=torch.float64) * 6.28
    rad = 0.95 + 0.049 * torch.rand(B, total, C, generator=g, dtype=torch.float64)
    if lower:
        dt = 0.1 * torch.rand(B, total, C, generator=g, dtype=torch.float64)
        A = torch.stack([torch.stack([rad, torch.zeros_like(rad)], -1),
                         torch.stack([dt * rad, torch.ones_like(rad)], -1)], -2)
    else:
        A = torch.stack([torch.stack([th.cos(), -th.sin()], -1),
                         torch.stack([th.sin(), th.cos()], -1)], -2) * rad[..., None, None]
    b = torch.rand(B, total, C, 2, generator=g, dtype=torch.float64) - 0.5
    h0 = torch.rand(B, C, 2, generator=g, dtype=torch.float64) - 0.5
    w = torch.rand(B, total, C, 2, generator=g, dtype=torch.float64) - 0.5
    v = torch.rand(B, C, 2, generator=g, dtype=torch.float64) - 0.5

    rA, rb, rh0 = (x.clone().requires_grad_() for x in (A, b, h0))
    ref_h, ref_last = reference_block_scan(rA, rb, rh0 if with_h0 else None, reverse)
    ((ref_h * w).sum() + (ref_last * v).sum() * (P * (P + 1) / 2)).backward()

    sl = slice(start, start + lengths[r])
    given = A[:, sl].clone()
    if lower:
        given[..., 0, 1] = float("nan")  # never read
    sA = given.to(dtype).requires_grad_()
    sb = b[:, sl].to(dtype).clone().requires_grad_()
    sh0 = h0.to(dtype).clone().requires_grad_()
    h, h_last = seqpar.sp.block_scan(sA, sb, sh0 if with_h0 else None, reverse, group=group,
                                     algo=algo, lower_triangular=lower)
    ((h * w[:, sl].to(dtype)).sum() + (h_last * v.to(dtype)).sum() * (r + 1)).backward()

    def close(got, want, what):
        assert got.shape == want.shape, (what, got.shape, want.shape)
        if got.numel() == 0:
            return
        err = (got.double() - want).abs().max().item()
        assert err <= tol * max(1.0, want.abs().max().item()), \
            f"block {what} on rank {r} ({split}, reverse={reverse}, lower={lower}, {algo}, {dtype}): {err}"

    close(h.detach(), ref_h.detach()[:, sl], "h")
    close(h_last.detach(), ref_last.detach(), "h_last")
    gA = rA.grad[:, sl].clone()
    if lower:
        gA[..., 0, 1] = 0
    close(sA.grad, gA, "grad_A")
    close(sb.grad, rb.grad[:, sl], "grad_b")
    if with_h0:
        if r == (P - 1 if reverse else 0):
            close(sh0.grad, rh0.grad, "grad_h0")
        else:
            assert torch.count_nonzero(sh0.grad) == 0, "grad_h0 must be zero off the first rank"


def check_algo_argument(group):
    """The op's algo argument reaches the exchange: an unknown name is a ValueError naming it; on
    gloo, "exscan" (MPI only) is refused on every rank; an explicit algo beats SEQPAR_SP_ALGO."""
    P = dist.get_world_size(group)
    a = torch.full((1, 3, 4), 0.5, dtype=torch.float64)
    try:
        torch.ops.seqpar.sp_scan(a, a, None, False, group.group_name, algo="butterfly")
        raise AssertionError("no error for algo='butterfly'")
    except ValueError as e:
        assert "butterfly" in str(e) and "algo" in str(e), str(e)
    if P > 1:
        try:
            torch.ops.seqpar.sp_scan(a, a, None, False, group.group_name, algo="exscan")
            raise AssertionError("no error for algo='exscan' on a gloo group")
        except RuntimeError as e:
            assert "exscan" in str(e), str(e)
    os.environ["SEQPAR_SP_ALGO"] = "exscan"  # would fail on gloo, but the argument wins
    h, _ = torch.ops.seqpar.sp_scan(a, a, None, False, group.group_name, algo="tree")
    os.environ.pop("SEQPAR_SP_ALGO")
    assert h.shape == a.shape


def run_checks():
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    world = dist.group.WORLD
    P, r = dist.get_world_size(), dist.get_rank()
    report = torch.ops.seqpar.sp_comm_check(world.group_name)
    assert report.startswith("ok: c10d:gloo"), report
    for split in ("even", "uneven", "empty"):
        for reverse in (False, True):
            for algo in ("tree", "allgather", "ring"):
                check_case(world, split, reverse, split != "even", algo, torch.float64, 1e-12)
    check_case(world, "uneven", False, True, "auto", torch.float32, 2e-5)
    check_case(world, "uneven", True, True, "tree", torch.complex64, 2e-5)
    for algo in ("tree", "allgather", "ring", "blelloch", "auto"):
        check_case(world, "empty", True, True, algo, torch.float64, 1e-12, via="argument")
    check_algo_argument(world)
    for split in ("even", "uneven", "empty"):
        for reverse in (False, True):
            for lower in (False, True):
                algo = ("tree", "allgather", "ring")[(len(split) + reverse + 2 * lower) % 3]
                check_block_case(world, split, reverse, split != "uneven", lower, algo,
                                 torch.float64, 1e-12)
    check_block_case(world, "uneven", True, True, False, "auto", torch.float32, 2e-5)

    # Sub-groups: consecutive ranks of size 2 form sp groups (dp x sp), named by their group.
    if P % 2 == 0 and P > 2:
        mine = None
        for start in range(0, P, 2):
            grp = dist.new_group(ranks=[start, start + 1])
            if r in (start, start + 1):
                mine = grp
        assert torch.ops.seqpar.sp_comm_check(mine.group_name).endswith(" of 2")
        check_case(mine, "uneven", False, True, "tree", torch.float64, 1e-12)

    # Ranks that disagree on dtype all get the same clear error.
    if P > 1:
        dtype = torch.float32 if r == P - 1 else torch.float64
        a = torch.full((1, 3, 4), 0.5, dtype=dtype)
        try:
            torch.ops.seqpar.sp_scan(a, a, None, False, world.group_name)
            raise AssertionError(f"rank {r}: no error for disagreeing dtypes")
        except RuntimeError as e:
            assert "disagree" in str(e), str(e)
    dist.barrier()
    dist.destroy_process_group()
    print(f"rank {r}: sp_scan checks passed on {P} ranks", flush=True)


def run_killed(hang):
    """Rank 1 is killed (or hangs) after the group is up; the others must fail within the
    deadline, naming the call."""
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=20))
    r = dist.get_rank()
    dist.barrier()
    if r == 1:
        if hang:
            time.sleep(7)
            os._exit(0)
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.5)  # let the kill land: the test is about a dead peer, not a late one
    a = torch.full((2, 4, 3), 0.5, dtype=torch.float64)
    t0 = time.monotonic()
    try:
        torch.ops.seqpar.sp_scan(a, a, None, False, dist.group.WORLD.group_name)
        print(f"rank {r}: killed-FAIL: sp_scan returned although rank 1 is dead", flush=True)
        os._exit(1)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        print(f"rank {r}: killed-ok after {time.monotonic() - t0:.2f} s: {first}", flush=True)
    os._exit(0)  # the group is broken: skip its orderly shutdown


if __name__ == "__main__":
    load_seqpar()
    mode = sys.argv[1] if len(sys.argv) > 1 else "check"
    if mode in ("killed", "hang"):
        run_killed(hang=mode == "hang")
    else:
        run_checks()
