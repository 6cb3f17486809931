"""Accuracy of seqpar's scan at long T against a float64 reference (docs/accuracy.md).

    python benchmarks/accuracy_bench.py [--device cpu|cuda] [--ranks 3] [--log2-t 14 18 22 24]
                                        [--dtypes float32 bfloat16] [--json out.json]

For each decay, length, input dtype and rank count it runs torch.ops.seqpar.scan (one rank) or
torch.ops.seqpar.sp_scan over a gloo group of --ranks processes on this machine (uneven
slices), forward and backward of loss = sum(h * w) + sum(h_last * v), and prints the max
relative error (max |x - ref| / max |ref|) of h, h_last, grad_a and grad_b. Next to it, for h:
torch.cumsum (a = 1 only) and a pairwise (Hillis-Steele) tree scan written in PyTorch, both in
the input dtype. The reference is the same pairwise scan in float64 (complex128) on the stored
(rounded) inputs: its error is about log2(T) float64 roundings, 1e-14 at most here.

Decays (one sequence, B = D = 1; b, w, v uniform in (0, 1), so the state grows with T):
  one       a = 1 (a running sum, the position scan of the manifold layers)
  slow      a = 1 - 1e-4 (1e4 steps of memory; rounds to 1 in bfloat16)
  uniform   a uniform in (0.9, 1)
  rotation  complex64 a = exp(i theta), theta uniform in (-0.1, 0.1), |a| = 1 up to rounding
            (b, w, v complex; float32 runs only)
"""
import argparse
import json
import os
import platform
import socket
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "python"))
import seqpar  # noqa: E402

DECAYS = ["one", "slow", "uniform", "rotation"]


def make_inputs(decay, T, dtype, seed):
    """(a, b, w, v) in the storage dtype, shapes (1, T, 1) and (1, 1)."""
    g = torch.Generator().manual_seed(seed)
    shape = (1, T, 1)

    def unit(s=shape):
        return torch.rand(s, generator=g, dtype=torch.float64)

    if decay == "rotation":
        a = torch.polar(torch.ones(shape, dtype=torch.float64), 0.2 * unit() - 0.1)
        b, w = torch.complex(unit(), unit()), torch.complex(unit(), unit())
        v = torch.complex(unit((1, 1)), unit((1, 1)))
        dtype = torch.complex64
    else:
        a = {"one": torch.ones(shape, dtype=torch.float64),
             "slow": torch.full(shape, 1 - 1e-4, dtype=torch.float64),
             "uniform": 0.9 + 0.1 * unit()}[decay]
        b, w, v = unit(), unit(), unit((1, 1))
    return tuple(x.to(dtype) for x in (a, b, w, v))


def pairwise_scan(a, b):
    """Inclusive scan h_t = a_t h_{t-1} + b_t (h_{-1} = 0) along dim 1 by recursive doubling
    (Hillis-Steele): log2(T) rounds, each composing every step with the one d steps back."""
    A, B = a.clone(), b.clone()
    d, T = 1, a.shape[1]
    while d < T:
        B2 = B.clone()
        B2[:, d:] += A[:, d:] * B[:, :-d]
        A2 = A.clone()
        A2[:, d:] *= A[:, :-d]
        A, B, d = A2, B2, 2 * d
    return B


def reference(a, b, w, v):
    """float64 h, h_last, grad_a, grad_b of loss = sum(h w) + sum(h_last v) (real part)."""
    wide = torch.complex128 if a.is_complex() else torch.float64
    a, b, w, v = (x.to(wide) for x in (a, b, w, v))
    h = pairwise_scan(a, b)
    # lam_t = w_t + conj(a_{t+1}) lam_{t+1}, lam_{T-1} = w_{T-1} + v: a reverse scan.
    # PyTorch's gradient of a real loss w.r.t. a complex tensor is dL/d(re) + i dL/d(im): for
    # Re(sum h w) that is conj(w) at h, and it flows back through conj(a).
    coef = torch.cat([a[:, 1:].conj(), torch.ones_like(a[:, :1])], 1)
    g = w.conj().clone()
    g[:, -1] += v.conj()
    lam = pairwise_scan(coef.flip(1), g.flip(1)).flip(1)
    h_prev = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], 1)
    return h, h[:, -1], lam * h_prev.conj(), lam


def rel_err(x, ref):
    ref = ref.to(torch.complex128 if ref.is_complex() else torch.float64)
    x = x.detach().to(ref.dtype)
    scale = ref.abs().max().item()
    return (x - ref).abs().max().item() / (scale if scale > 0 else 1.0)


def slices(T, P):
    """Uneven slice lengths (the last rank takes the remainder)."""
    base = T // P
    lengths = [base + (1 if r < T % P else 0) for r in range(P)]
    return lengths


def run_seqpar(a, b, w, v, device, group=None, lengths=None, rank=0):
    """seqpar forward and backward on this rank's slice (all of it without a group)."""
    start = sum(lengths[:rank]) if lengths else 0
    n = lengths[rank] if lengths else a.shape[1]
    sa, sb, sw = (x[:, start:start + n].to(device).clone() for x in (a, b, w))
    sa.requires_grad_()
    sb.requires_grad_()
    if group is None:
        h, h_last = torch.ops.seqpar.scan(sa, sb, None, False)
        last_weight = 1
    else:
        h, h_last = torch.ops.seqpar.sp_scan(sa, sb, None, False, group.group_name)
        last_weight = 1 if rank == 0 else 0  # h_last is replicated; its gradient is summed
    loss = (h * sw).sum() + (h_last * v.to(device)).sum() * last_weight
    loss.real.backward()
    return h.detach().cpu(), h_last.detach().cpu(), sa.grad.cpu(), sb.grad.cpu()


def cases(args):
    for dtype_name in args.dtypes:
        for decay in DECAYS:
            if decay == "rotation" and dtype_name != "float32":
                continue
            for lt in args.log2_t:
                yield dtype_name, decay, lt


def rank_main(rank, P, port, args, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    seqpar.load_library()
    dist.init_process_group("gloo", rank=rank, world_size=P)
    group = dist.group.WORLD
    for i, (dtype_name, decay, lt) in enumerate(cases(args)):
        a, b, w, v = make_inputs(decay, 1 << lt, getattr(torch, dtype_name), seed=lt)
        out = run_seqpar(a, b, w, v, args.device, group, slices(1 << lt, P), rank)
        torch.save(out, os.path.join(out_dir, f"case{i}_rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--ranks", type=int, default=3, help="rank count of the multi-rank rows (0: none)")
    p.add_argument("--log2-t", type=int, nargs="+", default=[14, 18, 22, 24])
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    p.add_argument("--json", default="")
    args = p.parse_args()
    seqpar.load_library()

    multi = {}
    if args.ranks > 1:
        with tempfile.TemporaryDirectory() as out_dir:
            mp.spawn(rank_main, args=(args.ranks, free_port(), args, out_dir), nprocs=args.ranks)
            for i, _ in enumerate(cases(args)):
                parts = [torch.load(os.path.join(out_dir, f"case{i}_rank{r}.pt"))
                         for r in range(args.ranks)]
                multi[i] = (torch.cat([x[0] for x in parts], 1), parts[0][1],
                            torch.cat([x[2] for x in parts], 1), torch.cat([x[3] for x in parts], 1))

    results = []
    header = (f"{'dtype':9} {'decay':9} {'log2T':>5} {'ranks':>5} | {'h':>8} {'h_last':>8} "
              f"{'grad_a':>8} {'grad_b':>8} | {'cumsum h':>8} {'pairwise h':>10}")
    print(f"seqpar accuracy: device {args.device}, CPU target {seqpar.cpu_capability()}, "
          f"{platform.processor() or platform.machine()}; max |x - ref| / max |ref| against float64")
    print(header)
    print("-" * len(header))
    for i, (dtype_name, decay, lt) in enumerate(cases(args)):
        T = 1 << lt
        a, b, w, v = make_inputs(decay, T, getattr(torch, dtype_name), seed=lt)
        ref = reference(a, b, w, v)
        cumsum = rel_err(torch.cumsum(b, 1), ref[0]) if decay == "one" else None
        pairwise = rel_err(pairwise_scan(a, b), ref[0])
        runs = [(1, run_seqpar(a, b, w, v, args.device))]
        if i in multi:
            runs.append((args.ranks, multi[i]))
        for ranks, out in runs:
            errs = [rel_err(x, r) for x, r in zip(out, ref)]
            row = dict(dtype=a.dtype.__repr__().replace("torch.", ""), decay=decay, log2_t=lt,
                       ranks=ranks, h=errs[0], h_last=errs[1], grad_a=errs[2], grad_b=errs[3],
                       cumsum_h=cumsum, pairwise_h=pairwise)
            results.append(row)
            fmt = lambda x: f"{x:8.1e}" if x is not None else f"{'-':>8}"  # noqa: E731
            print(f"{row['dtype']:9} {decay:9} {lt:5d} {ranks:5d} | "
                  + " ".join(fmt(x) for x in errs)
                  + f" | {fmt(cumsum)} {pairwise:10.1e}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": args.device, "cpu_target": seqpar.cpu_capability(),
                       "torch": torch.__version__, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
