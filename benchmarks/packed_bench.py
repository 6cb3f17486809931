"""Cost of packed sequences (cu_seqlens, docs/packed_sequences.md) against the dense op on the
same number of tokens, as ratios measured in one run (the issue's target: within 10%).

    python benchmarks/packed_bench.py [--device cpu|cuda] [--log2-t 16] [--sequences 64]
        [--reps 5] [--json out]

For seqpar.scan (batch 1, 64 channels), chunk_gla and chunk_gated_delta_rule (8 heads,
K = V = 64) and causal_conv1d (width 4, 1024 channels), all float32: forward + backward of
sum(out * w) (+ the final states), the dense call (one sequence) and the packed one
(`--sequences` sequences of random lengths, a few empty, summing to T) timed alternately, rep
by rep; prints the medians and packed / dense. Every figure comes from this run; the machine
and thread count are printed with it.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "python"))
import seqpar  # noqa: E402


def pack(T, n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    cuts = torch.sort(torch.randint(0, T + 1, (n - 1,), generator=gen)).values
    return torch.cat([torch.zeros(1, dtype=torch.long), cuts, torch.tensor([T])])


def cases(T, device):
    gen = torch.Generator().manual_seed(1)
    f32 = dict(dtype=torch.float32)
    H, K = 8, 64

    def scan(cu):
        a = (0.5 + 0.5 * torch.rand(1, T, 64, generator=gen, **f32)).to(device).requires_grad_()
        b = torch.randn(1, T, 64, generator=gen, **f32).to(device).requires_grad_()
        return lambda: sum(x.sum() for x in seqpar.scan(a, b, cu_seqlens=cu))

    def matrix(model):
        def make(cu):
            q = torch.randn(1, T, H, K, generator=gen, **f32).to(device).requires_grad_()
            k = F.normalize(torch.randn(1, T, H, K, generator=gen, **f32), dim=-1).to(device)
            k.requires_grad_()
            v = torch.randn(1, T, H, K, generator=gen, **f32).to(device).requires_grad_()
            if model == "gla":
                g = (-torch.rand(1, T, H, K, generator=gen, **f32) * 0.1).to(device)
                g.requires_grad_()
                return lambda: sum(x.sum() for x in seqpar.chunk_gla(
                    q, k, v, g, output_final_state=True, cu_seqlens=cu))
            g = (-torch.rand(1, T, H, generator=gen, **f32) * 0.1).to(device).requires_grad_()
            beta = torch.rand(1, T, H, generator=gen, **f32).to(device).requires_grad_()
            return lambda: sum(x.sum() for x in seqpar.chunk_gated_delta_rule(
                q, k, v, g, beta, output_final_state=True, cu_seqlens=cu))
        return make

    def conv(cu):
        x = torch.randn(1, T, 1024, generator=gen, **f32).to(device).requires_grad_()
        w = torch.randn(1024, 4, generator=gen, **f32).to(device).requires_grad_()
        return lambda: sum(y.sum() for y in seqpar.causal_conv1d(
            x, w, activation="silu", output_final_state=True, cu_seqlens=cu))

    return {"scan": scan, "chunk_gla": matrix("gla"),
            "chunk_gated_delta_rule": matrix("gated_delta"), "causal_conv1d": conv}


def timed(fn, device):
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn().backward()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--log2-t", type=int, default=16)
    p.add_argument("--sequences", type=int, default=64)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--only", nargs="*", help="op names to run (default: all)")
    p.add_argument("--json")
    args = p.parse_args()
    T = 1 << args.log2_t
    seqpar.load_library()
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, "
          f"cpu target {seqpar.cpu_capability()}, device {args.device}; T = {T}, "
          f"{args.sequences} packed sequences")
    cu_packed = pack(T, args.sequences)
    cu_dense = torch.tensor([0, T])
    records = []
    for name, make in cases(T, args.device).items():
        if args.only and name not in args.only:
            continue
        dense, packed = make(cu_dense), make(cu_packed)
        timed(dense, args.device), timed(packed, args.device)  # warm-up
        td, tp = [], []
        for _ in range(args.reps):
            td.append(timed(dense, args.device))
            tp.append(timed(packed, args.device))
        d, pk = statistics.median(td), statistics.median(tp)
        records.append({"op": name, "T": T, "sequences": args.sequences, "dense_s": d,
                        "packed_s": pk, "ratio": pk / d, "device": args.device,
                        "threads": torch.get_num_threads()})
        print(f"{name:24s} dense {d * 1e3:9.2f} ms   packed {pk * 1e3:9.2f} ms   "
              f"packed/dense {pk / d:.3f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()
