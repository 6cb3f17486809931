"""Would reduce-then-scan beat the single-pass scan for a few long sequences? A probe, built
from the library's own ops, to measure before writing a kernel for it.

On a GPU the single-pass scan of one sequence (or a few) runs far below copy bandwidth: one
chain of tiles has hundreds of tiles in flight and every tile walks back over them to find its
prefix (docs/cuda.md, "Measured on an H200: channels contiguous with few column groups"). With
many sequences the same kernel chains tiles and runs near copy bandwidth. So cut each of the
BD sequences of length T into P pieces of L = T / P steps and treat the pieces as BD * P
sequences:

  1. (A_p, B_p) = scan_summary of every piece         reads a, b
  2. the state after each piece: scan over the P maps  (BD x P, tiny)
  3. h = scan of every piece from the state before it  reads a, b, writes h

That moves 5 streams instead of 3 (at most 60% of copy) but each pass runs in the
many-sequence regime. This script times the direct op and the split for each P, forward only,
and reports the error of both against float64 (the split rounds A_p, B_p to the input dtype in
step 1, which the direct op never does).

    python benchmarks/split_long_probe.py                  # on the GPU (CUDA graphs)
    python benchmarks/split_long_probe.py --device cpu --quick   # checks the arithmetic here
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import seqpar  # noqa: E402


def split_scan(a, b, pieces):
    """Forward scan of (BD, T) tensors through P pieces per sequence; returns (h, h_last)."""
    bd, t = a.shape
    length = t // pieces
    a_r, b_r = a.reshape(bd * pieces, length), b.reshape(bd * pieces, length)
    big_a, big_b = seqpar.scan_summary(a_r, b_r)
    states, _ = seqpar.scan(big_a.reshape(bd, pieces), big_b.reshape(bd, pieces))
    entry = torch.cat([torch.zeros_like(states[:, :1]), states[:, :-1]], dim=1)
    h, _ = seqpar.scan(a_r, b_r, entry.reshape(bd * pieces))
    return h.reshape(bd, t), states[:, -1]


def timed(fn, device, reps):
    """Median ms of fn(): replays of a CUDA graph on a GPU (no launch gaps; events around each
    call if capture fails, said on stderr), wall time on CPU."""
    if device == "cuda":
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                fn()
        torch.cuda.current_stream().wait_stream(stream)
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                fn()
            run = graph.replay
        except RuntimeError as e:
            print(f"split_long_probe: graph capture failed ({e}); timing calls with events", file=sys.stderr)
            run = fn
        times = []
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return statistics.median(times)
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def rel_err(h, ref):
    return float(((h.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-300)).item())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="small shapes (a check of the arithmetic)")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--json", help="append one JSON record per row")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("split_long_probe: no CUDA device (use --device cpu to check the arithmetic)")
    dev = torch.device(args.device)
    shapes = [(1 << 14, 1), (1 << 14, 4)] if args.quick else [(1 << 20, 1), (1 << 23, 1), (1 << 23, 16)]
    pieces_list = [16, 64] if args.quick else [128, 256, 512, 1024]
    dtypes = [torch.float32] if args.quick else [torch.float32, torch.bfloat16]
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    print(f"# split_long_probe on {name}, torch {torch.__version__}; forward; GB/s counts 3 streams "
          f"of the input dtype; % of a copy of one operand timed the same way")
    print(f"{'dtype':9} {'T':>9} {'BD':>3} {'P':>5} {'copy GB/s':>9} {'direct GB/s':>11} {'split GB/s':>10} "
          f"{'direct %':>8} {'split %':>7} {'direct err':>10} {'split err':>9}")
    out = open(args.json, "a") if args.json else None
    gen = torch.Generator(device="cpu").manual_seed(0)
    for dtype in dtypes:
        for t, bd in shapes:
            a64 = torch.empty(bd, t, dtype=torch.float64).uniform_(0.999, 1.0, generator=gen)
            b64 = torch.empty(bd, t, dtype=torch.float64).uniform_(-1.0, 1.0, generator=gen)
            a, b = a64.to(dtype).to(dev), b64.to(dtype).to(dev)
            ref, _ = seqpar.scan(a.double(), b.double())  # float64 on the same device
            nbytes = a.numel() * a.element_size()
            dst = torch.empty_like(a)
            copy_ms = timed(lambda: dst.copy_(a), args.device, args.reps)
            direct_ms = timed(lambda: seqpar.scan(a, b), args.device, args.reps)
            direct_err = rel_err(seqpar.scan(a, b)[0], ref)
            copy_gbs = 2 * nbytes / copy_ms / 1e6
            direct_gbs = 3 * nbytes / direct_ms / 1e6
            for pieces in pieces_list:
                if t % pieces:
                    continue
                split_ms = timed(lambda: split_scan(a, b, pieces), args.device, args.reps)
                h, h_last = split_scan(a, b, pieces)
                split_err = max(rel_err(h, ref), rel_err(h_last, ref[:, -1]))
                split_gbs = 3 * nbytes / split_ms / 1e6
                row = dict(dtype=str(dtype).replace("torch.", ""), T=t, BD=bd, P=pieces, device=name,
                           copy_GBs=copy_gbs, direct_GBs=direct_gbs, split_GBs=split_gbs,
                           direct_err=direct_err, split_err=split_err)
                print(f"{row['dtype']:9} {t:>9} {bd:>3} {pieces:>5} {copy_gbs:>9.0f} {direct_gbs:>11.0f} "
                      f"{split_gbs:>10.0f} {100 * direct_gbs / copy_gbs:>7.0f}% {100 * split_gbs / copy_gbs:>6.0f}% "
                      f"{direct_err:>10.1e} {split_err:>9.1e}", flush=True)
                if out:
                    out.write(json.dumps(row) + "\n")
    if out:
        out.close()


if __name__ == "__main__":
    main()
