"""One rank of the sequence-parallel packed-sequence tests (cu_seqlens); run under torchrun by
test_sp_packed.py.

Every rank builds the same pack from a fixed seed: sequences of random lengths (empty ones
included) that cross rank boundaries, over slices that are even, uneven or empty. It checks
seqpar.sp.chunk_gla, seqpar.sp.chunk_gated_delta_rule and seqpar.sp.causal_conv1d with
cu_seqlens (outputs, all N final states, the gradients of every input and of the initial
states) against the one-process packed functions over the whole pack (themselves checked
against per-sequence float64 references in test_packed_sequences.py), and seqpar.sp.scan,
forward and reverse, against the per-sequence float64 recurrence itself, for every exchange
algorithm; then that bad cu_seqlens on one rank raises the same kind of error on every rank
instead of hanging. Any failure raises and the rank exits non-zero.
"""
import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "python"))
import seqpar  # noqa: E402
import seqpar.sp  # noqa: E402
from reference import scan_per_sequence  # noqa: E402
from sp_common import slice_lengths  # noqa: E402


def pack(total, seed):
    """cu_seqlens over `total` steps: random lengths 0..9 (zeros included), the last one
    taking what is left; a leading and a trailing empty sequence."""
    gen = torch.Generator().manual_seed(seed)
    lengths, left = [0], total
    while left > 0:
        n = min(int(torch.randint(0, 10, (1,), generator=gen)), left)
        lengths.append(n)
        left -= n
    lengths.append(0)
    return torch.tensor([0] + torch.tensor(lengths).cumsum(0).tolist(), dtype=torch.int64)


def my_slice(split):
    P, r = dist.get_world_size(), dist.get_rank()
    lengths = slice_lengths(split, P)
    return sum(lengths[:r]), lengths[r], sum(lengths)


def close(where, name, got, want, tol):
    if got is None:
        got = torch.zeros_like(want)
    err = (got.double() - want.double()).abs().max().item() if got.numel() else 0.0
    scale = max(want.double().abs().max().item() if want.numel() else 0.0, 1.0)
    assert err <= tol * scale, f"{where}: {name} differs by {err:.3g} (scale {scale:.3g})"


def check_matrix(model, split, chunk, algo, seed):
    P, r = dist.get_world_size(), dist.get_rank()
    start, n, total = my_slice(split)
    cu = pack(total, seed)
    N = cu.shape[0] - 1
    gen = torch.Generator().manual_seed(seed)
    rn = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    H, K, V = 2, 4, 3
    q, v = rn(1, total, H, K), rn(1, total, H, V)
    k = F.normalize(rn(1, total, H, K), dim=-1)
    g = -torch.rand(1, total, H, *([K] if model == "gla" else []), generator=gen,
                    dtype=torch.float64)
    tensors = [q, k, v, g] + ([] if model == "gla" else [torch.rand(1, total, H, generator=gen,
                                                                    dtype=torch.float64)])
    h0 = rn(N, H, K, V)
    wo, wS = rn(1, total, H, V), rn(N, H, K, V)
    fn = seqpar.chunk_gla if model == "gla" else seqpar.chunk_gated_delta_rule
    sp_fn = seqpar.sp.chunk_gla if model == "gla" else seqpar.sp.chunk_gated_delta_rule
    full = [x.clone().requires_grad_() for x in tensors + [h0]]
    o_ref, S_ref = fn(*full[:-1], initial_state=full[-1], output_final_state=True,
                      chunk_size=chunk, cu_seqlens=cu)
    ref = torch.autograd.grad((o_ref * wo).sum() + P * (S_ref * wS).sum(), full)
    mine = [x[:, start:start + n].clone().requires_grad_() for x in tensors]
    mine.append(h0.clone().requires_grad_())
    o, S = sp_fn(*mine[:-1], initial_state=mine[-1], output_final_state=True, chunk_size=chunk,
                 cu_seqlens=cu, algo=algo)
    got = torch.autograd.grad((o * wo[:, start:start + n]).sum() + (S * wS).sum(), mine,
                              allow_unused=True)
    where = f"rank {r} P={P} {model} {split} chunk={chunk} {algo} cu={cu.tolist()}"
    close(where, "o", o, o_ref[:, start:start + n], 1e-10)
    close(where, "final states", S, S_ref, 1e-10)
    names = ["q", "k", "v", "g", "beta"][:len(tensors)]
    for i, name in enumerate(names):
        close(where, "grad " + name, got[i], ref[i][:, start:start + n], 1e-10)
    # initial states are replicated: each rank's gradient is its share, summing to the whole.
    g0 = got[-1] if got[-1] is not None else torch.zeros_like(h0)
    g0 = g0.contiguous().clone()  # a rank's zero gradient may come with permuted strides
    dist.all_reduce(g0)
    close(where, "grad initial_state (summed over ranks)", g0, ref[-1], 1e-10)


def check_conv(split, width, algo, seed):
    P, r = dist.get_world_size(), dist.get_rank()
    start, n, total = my_slice(split)
    cu = pack(total, seed)
    N = cu.shape[0] - 1
    gen = torch.Generator().manual_seed(seed)
    rn = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    D = 3
    x, w, bias, init = rn(1, total, D), rn(D, width), rn(D), rn(N, width - 1, D)
    wy, wf = rn(1, total, D), rn(N, width - 1, D)
    full = [t.clone().requires_grad_() for t in (x, w, bias, init)]
    y_ref, f_ref = seqpar.causal_conv1d(full[0], full[1], full[2], "silu", full[3], True,
                                        cu_seqlens=cu)
    ref = torch.autograd.grad((y_ref * wy).sum() + P * (f_ref * wf).sum(), full,
                              allow_unused=True)
    ref = [g if g is not None else torch.zeros_like(t) for g, t in zip(ref, full)]
    mine = [t.clone().requires_grad_() for t in (x[:, start:start + n], w, bias, init)]
    y, f = seqpar.sp.causal_conv1d(mine[0], mine[1], mine[2], "silu", mine[3], True, algo=algo,
                                   cu_seqlens=cu)
    got = torch.autograd.grad((y * wy[:, start:start + n]).sum() + (f * wf).sum(), mine,
                              allow_unused=True)
    where = f"rank {r} P={P} causal_conv1d {split} width={width} {algo} cu={cu.tolist()}"
    close(where, "y", y, y_ref[:, start:start + n], 1e-12)
    close(where, "final states", f, f_ref, 0)
    close(where, "grad x", got[0], ref[0][:, start:start + n], 1e-12)
    for i, name in ((1, "weight"), (2, "bias"), (3, "initial_state")):  # replicated
        total_grad = (got[i] if got[i] is not None else torch.zeros_like(ref[i])).contiguous()
        total_grad = total_grad.clone()  # all_reduce sums raw memory: same layout on every rank
        dist.all_reduce(total_grad)
        close(where, "grad " + name + " (summed over ranks)", total_grad, ref[i], 1e-10)


def check_scan(split, dtype, algo, seed, tol, reverse=False):
    """seqpar.sp.scan with cu_seqlens (forward, or reverse: every sequence from its own end)
    against the per-sequence float64 recurrence over the whole pack (reference.py)."""
    P, r = dist.get_world_size(), dist.get_rank()
    start, n, total = my_slice(split)
    cu = pack(total, seed)
    N = cu.shape[0] - 1
    gen = torch.Generator().manual_seed(seed)
    a = (0.5 + 0.5 * torch.rand(1, total, 3, 2, generator=gen, dtype=torch.float64)).to(dtype)
    b = torch.randn(1, total, 3, 2, generator=gen, dtype=torch.float64).to(dtype)
    h0 = torch.randn(N, 3, 2, generator=gen, dtype=torch.float64).to(dtype)
    wh, wl = torch.randn(1, total, 3, 2, generator=gen), torch.randn(N, 3, 2, generator=gen)
    full = [x.double().requires_grad_() for x in (a, b, h0)]
    h_ref, l_ref = scan_per_sequence(full[0], full[1], full[2], cu, reverse)
    ref = torch.autograd.grad((h_ref * wh).sum() + P * (l_ref * wl).sum(), full)
    mine = [x.clone().requires_grad_() for x in (a[:, start:start + n], b[:, start:start + n], h0)]
    h, last = seqpar.sp.scan(mine[0], mine[1], mine[2], reverse=reverse, algo=algo, cu_seqlens=cu)
    got = torch.autograd.grad((h.double() * wh[:, start:start + n]).sum() +
                              (last.double() * wl).sum(), mine, allow_unused=True)
    where = f"rank {r} P={P} scan reverse={reverse} {split} {dtype} {algo} cu={cu.tolist()}"
    close(where, "h", h, h_ref[:, start:start + n], tol)
    close(where, "final states", last, l_ref, tol)
    close(where, "grad a", got[0], ref[0][:, start:start + n], tol)
    close(where, "grad b", got[1], ref[1][:, start:start + n], tol)
    g0 = (got[2] if got[2] is not None else torch.zeros_like(h0)).contiguous().clone()
    dist.all_reduce(g0)
    close(where, "grad h0 (summed over ranks)", g0, ref[2], tol)


def check_errors():
    """A cu_seqlens that differs on one rank, or is invalid on one rank only, or ends off the
    pack: every rank raises a RuntimeError naming 'cu_seqlens' (none waits forever)."""
    P, r = dist.get_world_size(), dist.get_rank()
    start, n, total = my_slice("uneven")
    q = torch.randn(1, n, 2, 4, dtype=torch.float64)
    g = -torch.rand(1, n, 2, 4, dtype=torch.float64)
    good = pack(total, 5)
    cases = [("differs", torch.tensor([0, total]) if r == P - 1 and P > 1 else good),
             ("invalid on one rank", torch.tensor([1, total]) if r == 0 else good),
             ("ends off the pack", torch.tensor([0, total + 1]))]
    for name, cu in cases:
        if name == "differs" and P == 1:
            continue
        try:
            seqpar.sp.chunk_gla(q, q, q[..., :3], g, cu_seqlens=cu)
        except RuntimeError as e:
            assert "cu_seqlens" in str(e), f"rank {r} {name}: {e}"
        else:
            raise AssertionError(f"rank {r}: no error for cu_seqlens that {name}")


def main():
    dist.init_process_group("gloo")
    cases = 0
    for model in ("gla", "gated_delta"):
        for split in ("even", "uneven", "empty"):
            for seed, chunk in ((1, 4), (2, 16)):
                check_matrix(model, split, chunk, "auto", seed)
                cases += 1
        for algo in ("tree", "allgather", "ring", "blelloch"):
            check_matrix(model, "empty", 4, algo, 3)
            cases += 1
    for split in ("uneven", "empty"):
        for width in (1, 3):
            check_conv(split, width, "auto", 4)
            cases += 1
    check_conv("empty", 4, "ring", 6)
    for reverse in (False, True):
        for split in ("even", "uneven", "empty"):
            check_scan(split, torch.float64, "auto", 7, 1e-12, reverse)
            cases += 1
        check_scan("uneven", torch.float32, "auto", 8, 1e-5, reverse)
        for algo in ("tree", "allgather", "ring", "blelloch"):
            check_scan("empty", torch.float64, algo, 9, 1e-12, reverse)
        cases += 5
    check_errors()
    cases += 2
    print(f"rank {dist.get_rank()}: sp packed checks passed on {dist.get_world_size()} ranks "
          f"({cases} cases)", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
