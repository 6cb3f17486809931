"""Bandwidth benchmark of the CUDA scan (forward and fused backward) against the machine's copy
bandwidth and two baselines, all measured in the same run.

Figure of merit (docs/design.md section 1): achieved GB/s = bytes / time with
    forward  bytes = 3 * N * elem_size   (read a, b; write h)
    backward bytes = 5 * N * elem_size   (read a, h, grad_h; write grad_a, grad_b)
for N = batch*channels*T elements, and % of the device-to-device copy bandwidth
(2 * bytes_copied / time of a large tensor.copy_) measured at the start of the run.

Baselines (same shapes, same timing method), each skipped with a note when it cannot run:
  * torch-native: the scan written with PyTorch ops in fp32 through log-space cumulative sums
    (valid for a > 0): h_t = P_t * (h0 + sum_{s<=t} b_s / P_s), P_t = exp(cumsum(log a)),
    chunked along time (chunk 256) so that 1/P_s stays finite; several passes over memory;
  * accelerated-scan (pip package `accelerated-scan`, its warp kernel): shapes (batch, dim,
    T) with T a power of two in [32, 65536], no h0; skipped if the package is missing.

Timing: CUDA events around each call, warm-up calls first, an L2 flush (writing a buffer
twice the L2 size) before every repetition, median of --reps. Writes JSON to --json and a
markdown table to --markdown (or stdout).

    python benchmarks/cuda_scan_bench.py --json runs/cuda_scan.json --markdown runs/cuda_scan.md
    python benchmarks/cuda_scan_bench.py --quick   # a few shapes, for a smoke test
"""
import argparse
import datetime
import glob
import json
import math
import os
import platform
import statistics
import sys

import torch


def load_seqpar(path=None):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    candidates = [path, os.environ.get("SEQPAR_LIBRARY")]
    candidates += sorted(glob.glob(os.path.join(root, "build-cuda", "src", "libseqpar*.so")))
    candidates += sorted(glob.glob(os.path.join(root, "build*", "src", "libseqpar*.so")))
    for c in candidates:
        if c and os.path.exists(c):
            torch.ops.load_library(c)
            return c
    sys.exit("cuda_scan_bench: libseqpar.so not found (build with -DSEQPAR_WITH_CUDA=ON or pass --library)")


class Timer:
    """Median time in ms of fn() over reps, with warm-up and an L2 flush before each rep."""

    def __init__(self, warmup, reps):
        self.warmup, self.reps = warmup, reps
        l2 = torch.cuda.get_device_properties(0).L2_cache_size or (64 << 20)
        self.flush_buf = torch.empty(2 * l2, dtype=torch.uint8, device="cuda")

    def __call__(self, fn):
        for _ in range(self.warmup):
            fn()
        times = []
        for _ in range(self.reps):
            self.flush_buf.fill_(1)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return statistics.median(times)


def copy_bandwidth(timer, nbytes=1 << 30):
    """Device-to-device copy GB/s (read + write counted) of a 1 GiB buffer."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = timer(lambda: dst.copy_(src))
    del src, dst
    return 2 * nbytes / (ms * 1e-3) / 1e9


def torch_native_scan(a, b, chunk=256):
    """fp32 log-space formulation, chunked: a reference point for 'just use PyTorch'."""
    B, T, D = a.shape
    n = T // chunk
    a32 = a.float().view(B, n, chunk, D)
    b32 = b.float().view(B, n, chunk, D)
    log_p = torch.cumsum(torch.log(a32), dim=2)
    p = torch.exp(log_p)
    local = p * torch.cumsum(b32 / p, dim=2)
    carry_a = p[:, :, -1]  # (B, n, D)
    carry_b = local[:, :, -1]
    # sequential over chunks is too slow for long T; a second log-space level over chunk ends
    lp2 = torch.cumsum(torch.log(carry_a), dim=1)
    p2 = torch.exp(lp2)
    ends = p2 * torch.cumsum(carry_b / p2, dim=1)
    enter = torch.cat([torch.zeros_like(ends[:, :1]), ends[:, :-1]], dim=1)
    return (p * enter.unsqueeze(2) + local).view(B, T, D).to(a.dtype)


def try_accelerated_scan():
    try:
        from accelerated_scan.warp import scan as warp_scan  # noqa: F401
        return warp_scan
    except Exception as e:  # missing package or no compatible build
        print(f"note: accelerated-scan unavailable ({type(e).__name__}: {e}); baseline skipped")
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=None, help="write results as JSON here")
    ap.add_argument("--markdown", default=None, help="write the markdown table here (default stdout)")
    ap.add_argument("--library", default=None, help="path to libseqpar.so")
    ap.add_argument("--dtypes", default="float32,bfloat16", help="comma list: float32,bfloat16,float16,complex64,float64")
    ap.add_argument("--bd", default="1,16,256,4096,65536", help="batch*channels values")
    ap.add_argument("--log2t", default="12,14,16,18,20,22,24", help="log2 of T values")
    ap.add_argument("--layout", default="channels,time", help="channels (B,T,D contiguous) and/or time (T fastest)")
    ap.add_argument("--max-gib", type=float, default=None, help="skip shapes whose working set exceeds this (default: 60%% of free memory)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="a few shapes only")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("cuda_scan_bench: no CUDA device visible to PyTorch")

    lib = load_seqpar(args.library)
    dtypes = [getattr(torch, d) for d in args.dtypes.split(",")]
    bds = [int(x) for x in args.bd.split(",")]
    log2ts = [int(x) for x in args.log2t.split(",")]
    layouts = args.layout.split(",")
    if args.quick:
        dtypes, bds, log2ts, layouts = dtypes[:1], [1, 256], [16, 20], layouts
    timer = Timer(args.warmup, args.reps)
    free, _ = torch.cuda.mem_get_info()
    max_bytes = (args.max_gib * 2**30) if args.max_gib else 0.6 * free
    copy_gbs = copy_bandwidth(timer)
    warp_scan = try_accelerated_scan()
    props = torch.cuda.get_device_properties(0)
    print(f"device: {props.name}, copy bandwidth {copy_gbs:.0f} GB/s")

    rows = []
    for dtype in dtypes:
        esize = torch.empty((), dtype=dtype).element_size()
        for layout in layouts:
            for bd in bds:
                for lt in log2ts:
                    T = 1 << lt
                    n = bd * T
                    # backward working set: a, h, grad_h, grad_a, grad_b (+ b for the forward)
                    if 6 * n * esize > max_bytes:
                        continue
                    B, D = (bd, 1) if layout == "time" else ((1, bd) if bd <= 4096 else (bd // 4096, 4096))
                    shape = (B, T, D)
                    if layout == "time":
                        a = torch.empty((B, D, T), dtype=dtype, device="cuda").transpose(1, 2)
                    else:
                        a = torch.empty(shape, dtype=dtype, device="cuda")
                    mag = torch.rand(a.shape, device="cuda") * 0.1 + 0.9
                    a.copy_(mag.to(dtype) if not dtype.is_complex else torch.polar(mag, 0.1 * mag))
                    b = torch.randn_like(a)
                    g = torch.randn_like(a)
                    del mag
                    fwd = lambda: torch.ops.seqpar.scan(a, b, None, False)
                    h, _ = fwd()
                    bwd = lambda: torch.ops.seqpar.scan_backward(a, h, None, g, None, False)
                    row = {"dtype": str(dtype).replace("torch.", ""), "layout": layout, "batch": B,
                           "channels": D, "batch_x_channels": bd, "T": T}
                    ms = timer(fwd)
                    row["fwd_ms"] = ms
                    row["fwd_gbs"] = 3 * n * esize / (ms * 1e-3) / 1e9
                    ms = timer(bwd)
                    row["bwd_ms"] = ms
                    row["bwd_gbs"] = 5 * n * esize / (ms * 1e-3) / 1e9
                    row["fwd_pct_copy"] = 100 * row["fwd_gbs"] / copy_gbs
                    row["bwd_pct_copy"] = 100 * row["bwd_gbs"] / copy_gbs
                    if not dtype.is_complex and layout == "channels" and T >= 256:
                        try:
                            ms = timer(lambda: torch_native_scan(a, b))
                            row["torch_native_fwd_gbs"] = 3 * n * esize / (ms * 1e-3) / 1e9
                        except torch.OutOfMemoryError:
                            row["torch_native_fwd_gbs"] = None
                            torch.cuda.empty_cache()
                    # accelerated-scan: (batch, dim, T), T a power of two in [32, 65536], fp32/bf16/fp16
                    if (warp_scan is not None and dtype in (torch.float32, torch.bfloat16, torch.float16)
                            and 32 <= T <= 65536):
                        ga = a.permute(0, 2, 1).contiguous()
                        gb = b.permute(0, 2, 1).contiguous()
                        try:
                            ms = timer(lambda: warp_scan(ga, gb))
                            row["accelerated_scan_fwd_gbs"] = 3 * n * esize / (ms * 1e-3) / 1e9
                        except Exception as e:
                            row["accelerated_scan_fwd_gbs"] = None
                            row["accelerated_scan_note"] = f"{type(e).__name__}: {e}"[:200]
                        del ga, gb
                    rows.append(row)
                    print(json.dumps(row))
                    del a, b, g, h
                    torch.cuda.empty_cache()

    meta = {"device": props.name, "sm_count": props.multi_processor_count,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "cuda": torch.version.cuda, "library": lib,
            "copy_gbs": copy_gbs, "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
            "host": platform.node(), "reps": args.reps, "warmup": args.warmup,
            "bytes_formula": {"forward": "3 * N * elem_size", "backward": "5 * N * elem_size",
                              "copy": "2 * bytes per copy_"}}
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)

    def fmt(x, nd=0):
        return "-" if x is None else f"{x:.{nd}f}"

    lines = [f"Device {meta['device']} ({meta['sm_count']} SMs), {meta['date']}, torch {meta['torch']}, "
             f"copy bandwidth {copy_gbs:.0f} GB/s. Command: `{meta['command']}`", "",
             "| dtype | layout | B x D | T | fwd GB/s | fwd % copy | bwd GB/s | bwd % copy | torch-native fwd GB/s | accelerated-scan fwd GB/s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dtype']} | {r['layout']} | {r['batch_x_channels']} | 2^{int(math.log2(r['T']))} | "
                     f"{fmt(r['fwd_gbs'])} | {fmt(r['fwd_pct_copy'], 1)} | {fmt(r['bwd_gbs'])} | "
                     f"{fmt(r['bwd_pct_copy'], 1)} | {fmt(r.get('torch_native_fwd_gbs'))} | "
                     f"{fmt(r.get('accelerated_scan_fwd_gbs'))} |")
    table = "\n".join(lines) + "\n"
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)
    else:
        print(table)


if __name__ == "__main__":
    main()
