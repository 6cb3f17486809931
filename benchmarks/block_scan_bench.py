"""The 2x2 block scan's bandwidth on the CPU against triad measured in the same run
(docs/block_scan.md). Counts the bytes of A, b and h (forward: 32 B per (batch, time, channel)
in float32) and of A, h, grad_h, grad_A, grad_b (backward: 56 B), as the issue's target does
(>= 70% of triad forward, >= 60% backward); triad is a = b + 3 c through torch.add (12 B per
element), on arrays of the forward's size. Medians of --repeats runs after one warm-up.
Freed memory is kept by the C library (mallopt: no mmap, no trim), so that the op's fresh outputs
reuse pages already touched, as triad's preallocated output does: the figures are the scan's,
not the kernel's first-touch page faults (seqpar-train's keep_freed_memory does the same).

    python3 benchmarks/block_scan_bench.py [--shapes 1x4194304x64,64x65536x1] [--repeats 5]
        [--threads N] [--lower]
"""
import argparse
import ctypes
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "python"))
import seqpar  # noqa: E402


def timed(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def keep_freed_memory():
    libc = ctypes.CDLL("libc.so.6")
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    libc.mallopt(M_MMAP_MAX, 0)
    libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)


def main():
    keep_freed_memory()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="1x4194304x64,64x65536x1")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--lower", action="store_true", help="lower_triangular=True")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"seqpar.block_scan on {seqpar.cpu_capability()}, {torch.get_num_threads()} threads, "
          f"float32, lower_triangular={args.lower}")
    print(f"{'shape':>16} {'triad GB/s':>10} {'fwd GB/s':>9} {'%triad':>7} {'bwd GB/s':>9} "
          f"{'%triad':>7}")
    for spec in args.shapes.split(","):
        B, T, C = (int(x) for x in spec.split("x"))
        n = B * T * C
        g = torch.Generator().manual_seed(0)
        A = torch.rand(B, T, C, 2, 2, generator=g) * 0.5
        b = torch.randn(B, T, C, 2, generator=g)
        grad_h = torch.randn(B, T, C, 2, generator=g)
        # triad over the forward's bytes: 32 B per item = 8 floats -> 8n/3 floats per array
        m = 8 * n // 3
        x, y, z = torch.empty(m), torch.rand(m), torch.rand(m)
        triad = 12 * m / timed(lambda: torch.add(y, z, alpha=3.0, out=x), args.repeats) / 1e9
        del x, y, z
        fwd_out = {}

        def fwd():
            fwd_out["h"] = seqpar.block_scan(A, b, lower_triangular=args.lower)[0]

        t_f = timed(fwd, args.repeats)
        h = fwd_out.pop("h")
        t_b = timed(lambda: torch.ops.seqpar.block_scan_backward(
            A, h, None, grad_h, None, False, args.lower), args.repeats)
        fwd_gbs, bwd_gbs = 32 * n / t_f / 1e9, 56 * n / t_b / 1e9
        print(f"{spec:>16} {triad:10.1f} {fwd_gbs:9.1f} {100 * fwd_gbs / triad:6.0f}% "
              f"{bwd_gbs:9.1f} {100 * bwd_gbs / triad:6.0f}%", flush=True)
        del A, b, grad_h, h


if __name__ == "__main__":
    main()
