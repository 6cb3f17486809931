"""One rank of the sp-on-a-device check: seqpar.sp.scan, seqpar.sp.chunk_gla and
seqpar.sp.chunk_gated_delta_rule on tensors of --device (cuda on a GPU machine, every rank on
the same GPU; cpu for a dry run), over a gloo group, against one process running the one-device
ops on the whole sequence: outputs, final states and the gradients of every input.

    python -m torch.distributed.run --nproc-per-node P tests/python/sp_device_worker.py --device cuda

NCCL refuses two ranks on one GPU, so this uses gloo (which stages device tensors through the
host); a multi-GPU machine would run the same with one GPU per rank over NCCL. Run by
scripts/gpu_session.sh (step sp-cuda) for P = 2 and 4. Prints one line per rank and check.
"""
import argparse
import datetime
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import seqpar  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--device", default="cuda")
args = parser.parse_args()
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=120))
P, r = dist.get_world_size(), dist.get_rank()
dev = torch.device(args.device)


def bounds(total):
    """Uneven slices, rank 1 empty when P > 2."""
    weights = [0 if (q == 1 and P > 2) else q + 1 for q in range(P)]
    cuts = [total * sum(weights[:q]) // sum(weights) for q in range(P + 1)]
    return cuts[r], cuts[r + 1]


def check(name, got, want, tol):
    got, want = got.double().cpu(), want.double().cpu()
    err = (got - want).abs().max().item() if got.numel() else 0.0
    scale = max(1.0, want.abs().max().item()) if want.numel() else 1.0
    ok = err <= tol * scale
    print(f"rank {r} P={P} {name}: max error {err:.3g} {'ok' if ok else 'FAIL'}", flush=True)
    return ok


def compare(name, one, many, inputs, s, e, tol):
    """one/many: functions of the inputs returning (outputs, final state); compares outputs,
    final states and the gradients of sum(o * w) + sum(state * u) over every input."""
    gen = torch.Generator().manual_seed(11)
    full = [x.detach().clone().requires_grad_() for x in inputs]
    o, state = one(*full)
    w = torch.randn(o.shape, generator=gen, dtype=torch.float64).to(dev, o.dtype)
    u = torch.randn(state.shape, generator=gen, dtype=torch.float64).to(dev, state.dtype)
    ((o * w).sum() + (state * u).sum() * P).backward()
    part = [x.detach()[:, s:e].clone().requires_grad_() for x in inputs]
    o_p, state_p = many(*part)
    ((o_p * w[:, s:e]).sum() + (state_p * u).sum()).backward()
    ok = check(f"{name} outputs", o_p.detach(), o.detach()[:, s:e], tol)
    ok &= check(f"{name} final state", state_p.detach(), state.detach(), tol)
    for i, (a, b) in enumerate(zip(part, full)):
        ok &= check(f"{name} grad {i}", a.grad, b.grad[:, s:e], tol)
    return ok


gen = torch.Generator().manual_seed(5)
ok = True
T = 4099
s, e = bounds(T)
a = (0.5 + 0.5 * torch.rand(2, T, 3, 4, generator=gen)).to(dev)
b = (torch.rand(2, T, 3, 4, generator=gen) - 0.5).to(dev)
for reverse in (False, True):
    ok &= compare(f"sp.scan reverse={reverse}", lambda x, y: seqpar.scan(x, y, reverse=reverse),
                  lambda x, y: seqpar.sp.scan(x, y, reverse=reverse), [a, b], s, e, 1e-4)

B, T, H, K, V = 1, 515, 2, 16, 8
s, e = bounds(T)
q = torch.randn(B, T, H, K, generator=gen).to(dev)
k = torch.nn.functional.normalize(torch.randn(B, T, H, K, generator=gen), dim=-1).to(dev)
v = torch.randn(B, T, H, V, generator=gen).to(dev)
g = (-torch.rand(B, T, H, generator=gen)).to(dev)
beta = torch.rand(B, T, H, generator=gen).to(dev)
kw = dict(output_final_state=True, chunk_size=64)
ok &= compare("sp.chunk_gated_delta_rule",
              lambda *x: seqpar.chunk_gated_delta_rule(*x, **kw),
              lambda *x: seqpar.sp.chunk_gated_delta_rule(*x, **kw), [q, k, v, g, beta], s, e, 2e-4)
gk = (-torch.rand(B, T, H, K, generator=gen)).to(dev)
ok &= compare("sp.chunk_gla", lambda *x: seqpar.chunk_gla(*x, **kw),
              lambda *x: seqpar.sp.chunk_gla(*x, **kw), [q, k, v, gk], s, e, 2e-4)

dist.destroy_process_group()
print(f"rank {r}: sp device checks {'passed' if ok else 'FAILED'} on {P} ranks ({dev})", flush=True)
sys.exit(0 if ok else 1)
