"""One rank of the sequence-parallel matrix-state tests; run under torchrun by
test_sp_matrix_state.py.

Every rank builds the same full problem from a fixed seed, takes its slice (even, uneven and
with empty slices; lengths not multiples of the chunk), and checks seqpar.sp.chunk_gla and
seqpar.sp.chunk_gated_delta_rule, outputs, the final state and the gradients of every input,
against one process running the local op over the whole sequence. Then it checks that two runs
give bitwise-equal results. Any failure raises and the rank exits non-zero.
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
from sp_common import slice_lengths  # noqa: E402


def problem(model, total, dtype):
    gen = torch.Generator().manual_seed(4321)
    B, H, K, V = 2, 2, 4, 3
    q = torch.randn(B, total, H, K, generator=gen, dtype=torch.float64)
    k = F.normalize(torch.randn(B, total, H, K, generator=gen, dtype=torch.float64), dim=-1)
    v = torch.randn(B, total, H, V, generator=gen, dtype=torch.float64)
    g = -torch.rand(B, total, H, K if model == "gla" else 1, generator=gen, dtype=torch.float64)
    if model != "gla":
        g = g.squeeze(-1)
    beta = torch.rand(B, total, H, generator=gen, dtype=torch.float64)
    h0 = torch.randn(B, H, K, V, generator=gen, dtype=torch.float64)
    wo = torch.randn(B, total, H, V, generator=gen, dtype=torch.float64)
    wS = torch.randn(B, H, K, V, generator=gen, dtype=torch.float64)
    cast = lambda x: x.to(dtype)  # noqa: E731
    inputs = [cast(q), cast(k), cast(v), cast(g)] + ([cast(beta)] if model != "gla" else [])
    return inputs, h0.to(torch.float64 if dtype == torch.float64 else torch.float32), wo, wS


def run(model, inputs, h0, chunk, group=None):
    if group is None:
        fn = seqpar.chunk_gla if model == "gla" else seqpar.chunk_gated_delta_rule
        return fn(*inputs, initial_state=h0, output_final_state=True, chunk_size=chunk)
    fn = seqpar.sp.chunk_gla if model == "gla" else seqpar.sp.chunk_gated_delta_rule
    return fn(*inputs, initial_state=h0, output_final_state=True, chunk_size=chunk, group=group)


def check_case(model, split, chunk, dtype, tol, algo="auto"):
    os.environ["SEQPAR_SP_ALGO"] = algo
    P, r = dist.get_world_size(), dist.get_rank()
    lengths = slice_lengths(split, P)
    start, total = sum(lengths[:r]), sum(lengths)
    inputs, h0, wo, wS = problem(model, total, dtype)

    # One process, whole sequence.
    full = [x.clone().requires_grad_() for x in inputs]
    h0_full = h0.clone().requires_grad_()
    o_ref, S_ref = run(model, full, h0_full, chunk)
    loss_ref = (o_ref.double() * wo).sum() + (S_ref.double() * wS).sum() * P
    grads_ref = torch.autograd.grad(loss_ref, full + [h0_full])

    # This rank's slice. The global loss is the sum of the ranks' losses, each holding the
    # final-state term once, so the reference above counts it P times.
    mine = [x[:, start:start + lengths[r]].clone().requires_grad_() for x in inputs]
    h0_mine = h0.clone().requires_grad_()
    o, S = run(model, mine, h0_mine, chunk, group=dist.group.WORLD)
    loss = (o.double() * wo[:, start:start + lengths[r]]).sum() + (S.double() * wS).sum()
    grads = torch.autograd.grad(loss, mine + [h0_mine], allow_unused=True)

    def close(name, got, want):
        if got is None:  # not reached by the loss: h0 off rank 0
            got = torch.zeros_like(want)
        err = (got.double() - want.double()).abs().max().item() if got.numel() else 0.0
        scale = max(want.double().abs().max().item() if want.numel() else 0.0, 1.0)
        assert err <= tol * scale, (f"rank {r} P={P} {model} {split} chunk={chunk} {dtype}: "
                                    f"({algo}) {name} differs by {err:.3g} (scale {scale:.3g})")

    close("o", o, o_ref[:, start:start + lengths[r]])
    close("final_state", S, S_ref)
    names = ["q", "k", "v", "g"] + (["beta"] if model != "gla" else [])
    for name, got, want in zip(names, grads, grads_ref):
        close("grad " + name, got, want[:, start:start + lengths[r]])
    want_h0 = grads_ref[-1] if r == 0 else torch.zeros_like(grads_ref[-1])
    close("grad initial_state", grads[-1], want_h0)

    # Run to run: bitwise the same.
    o2, S2 = run(model, [x.detach() for x in mine], h0, chunk, group=dist.group.WORLD)
    assert torch.equal(o2, o.detach()) and torch.equal(S2, S.detach()), f"rank {r}: not reproducible"


def main():
    dist.init_process_group("gloo")
    cases = 0
    for model in ("gla", "gated_delta"):
        for split in ("even", "uneven", "empty"):
            for chunk in (4, 16):
                check_case(model, split, chunk, torch.float64, 1e-10)
                cases += 1
        check_case(model, "uneven", 16, torch.float32, 2e-4)
        for algo in ("tree", "allgather", "ring"):
            check_case(model, "empty", 16, torch.float64, 1e-10, algo)
        cases += 4
    print(f"rank {dist.get_rank()}: sp matrix-state checks passed on {dist.get_world_size()} "
          f"ranks ({cases} cases)", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
