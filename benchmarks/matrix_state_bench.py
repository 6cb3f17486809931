"""Speed and memory of the chunked matrix-state ops (docs/matrix_state.md), as ratios in one run.

    python benchmarks/matrix_state_bench.py [--device cpu|cuda] [--log2-t 16] [--heads 8]
        [--dim 64] [--chunk 64] [--recurrence-log2-t 11] [--sp-ranks 2] [--reps 3] [--json out]
        [--chunked-only] [--models gla,gated_delta,kda] [--transformers-log2-t 12]

For gated linear attention, gated DeltaNet and KDA (float32, batch 1), forward + backward of
loss = sum(o * w) + sum(S_T * u):
  * chunked   seqpar.chunk_gla / chunk_gated_delta_rule / chunk_kda at T = 2^log2_t: median
              time, tokens/s;
  * flops     the matrix-product FLOPs the chunk form needs (forward + backward, counted from
              the shapes by chunk_form_flops below: every product of the chunk form once,
              2 m n k each, the triangular solve as half a product, nothing recomputed)
              divided by its time, and that as a fraction of a batched matmul of
              (C x K) @ (K x C) blocks measured here (the issue's target: >= 50%);
  * transformers  on the CPU, the forward (no autograd) against transformers' pure-PyTorch
              chunk forms, timed alternately in this run, when transformers is installed:
              gated DeltaNet against torch_chunk_gated_delta_rule (Qwen3-Next's CPU fallback)
              at T (the issue's target: >= 3x), KDA against chunk_kimi_delta_attention (Kimi
              Linear's) at T = 2^transformers_log2_t (it forms a (C, C, K) decay tensor per
              chunk: 16 GiB at T = 2^16, 8 heads);
  * recurrence  the per-step recurrence (a loop of T steps in PyTorch, autograd through it) at
              T = 2^recurrence_log2_t (its cost is linear in T; a long one would not fit in
              memory), and the chunked op's tokens/s over the recurrence's;
  * memory    peak memory of forward + backward beyond the inputs: on CPU the process's peak
              resident size over its resident size before the call (each case in a fresh
              process; an upper bound when the import's own peak was higher),
              torch.cuda.max_memory_allocated on CUDA; and that over the least the call
              must hold: outputs, gradients of the inputs and the per-chunk states (the
              issue's target: <= 1.10);
  * sp        seqpar.sp.* over a gloo group of --sp-ranks processes on this machine, one thread
              each, T split evenly, against one process with torch's default threads (CPU only).
Every figure comes from this run; the machine, torch and thread counts are printed with it.
"""
import argparse
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
import seqpar  # noqa: E402
import seqpar.sp  # noqa: E402

MODELS = ["gla", "gated_delta", "kda"]


def inputs(model, T, H, D, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(1, T, H, D, generator=gen)
    k = F.normalize(torch.randn(1, T, H, D, generator=gen), dim=-1)
    v = torch.randn(1, T, H, D, generator=gen)
    g = F.logsigmoid(torch.randn(1, T, H, 1 if model == "gated_delta" else D, generator=gen) + 4)
    if model == "gated_delta":
        g = g.squeeze(-1)
    xs = [q, k, v, g]
    if model != "gla":
        xs.append(torch.rand(1, T, H, generator=gen))
    return [x.to(device).requires_grad_() for x in xs]


def chunked(model, xs, chunk, group=None):
    mod = seqpar.sp if group is not None else seqpar
    fn = {"gla": mod.chunk_gla, "gated_delta": mod.chunk_gated_delta_rule,
          "kda": mod.chunk_kda}[model]
    kw = {"group": group} if group is not None else {}
    return fn(*xs, output_final_state=True, chunk_size=chunk, **kw)


def recurrence(model, xs):
    """The per-step recurrence in float32 with autograd (the baseline a user would write)."""
    q, k, v, g = xs[:4]
    B, T, H, K = q.shape
    S = torch.zeros(B, H, K, v.shape[-1], device=q.device)
    outs = []
    for t in range(T):
        kt, vt = k[:, t].unsqueeze(-1), v[:, t].unsqueeze(-2)
        if model == "gla":
            S = g[:, t].exp().unsqueeze(-1) * S + kt * vt
        elif model == "kda":
            bt = xs[4][:, t][..., None, None]
            S = g[:, t].exp().unsqueeze(-1) * S
            S = S + bt * kt * (vt - kt.transpose(-1, -2) @ S)
        else:
            bt = xs[4][:, t][..., None, None]
            S = g[:, t].exp()[..., None, None] * (S - bt * kt * (kt.transpose(-1, -2) @ S))
            S = S + bt * kt * vt
        outs.append((S.transpose(-1, -2) @ q[:, t].unsqueeze(-1)).squeeze(-1) * K ** -0.5)
    return torch.stack(outs, 1), S


def chunk_form_flops(model, T, H, K, V, C):
    """Matrix-product FLOPs of forward + backward in the chunk form, 2 m n k per product (KDA
    counted as gated DeltaNet: its decayed scores are the same products, taken in blocks)."""
    N = (T + C - 1) // C
    mm = lambda m, n, k: 2 * m * n * k  # noqa: E731
    if model == "gla":
        fwd = mm(C, C, K) / 2 + mm(C, V, K) + mm(C, V, C) / 2 + mm(K, V, C)
        bwd = (mm(C, V, C) / 2 + mm(C, V, K) + mm(C, C, V) / 2 + 3 * mm(C, K, V)
               + 2 * mm(C, K, C) / 2)
    else:
        solve = mm(C, V + K, C) / 2
        fwd = 2 * mm(C, C, K) + solve + 3 * mm(C, V, K) + mm(C, V, C) / 2
        bwd = (mm(C, V, C) / 2 + mm(C, C, V) / 2 + 6 * mm(C, K, V) + 3 * mm(C, K, C)
               + solve + mm(C, C, V + K))
    return N * H * (fwd + bwd)


def minimum_memory(model, T, H, K, V, C):
    """Bytes forward + backward must hold besides the inputs (float32): the outputs o and the
    final state, a gradient per input, and the state entering each chunk."""
    N = (T + C - 1) // C
    inputs_ = T * H * (2 * K + V + {"gla": K, "gated_delta": 2, "kda": K + 1}[model])
    return 4 * (T * H * V + H * K * V + inputs_ + N * H * K * V)


def transformers_forms():
    """transformers' pure-PyTorch chunk forms by model, those it has (none without it)."""
    forms = {}
    try:
        from transformers.models.qwen3_next.modeling_qwen3_next import \
            torch_chunk_gated_delta_rule
        forms["gated_delta"] = torch_chunk_gated_delta_rule
    except Exception:
        pass
    try:
        from transformers.models.kimi_linear import modeling_kimi_linear as kimi
        # the function without the hub-kernel wrapper, when the decorator keeps it
        fn = kimi.chunk_kimi_delta_attention
        forms["kda"] = getattr(fn, "__wrapped__", fn)
    except Exception:
        pass
    return forms


def transformers_ratio(model, xs, chunk, reps):
    """(seqpar forward, transformers forward) medians, timed alternately, or None."""
    theirs_fn = transformers_forms().get(model)
    if theirs_fn is None:
        return None
    q, k, v, g, beta = (x.detach() for x in xs)
    ours_fn = seqpar.chunk_kda if model == "kda" else seqpar.chunk_gated_delta_rule
    ours, theirs = [], []
    with torch.no_grad():
        for i in range(reps + 1):
            t0 = time.perf_counter()
            ours_fn(q, k, v, g, beta, output_final_state=True, chunk_size=chunk)
            t1 = time.perf_counter()
            theirs_fn(q, k, v, g, beta, chunk_size=chunk, initial_state=None,
                      output_final_state=True)
            t2 = time.perf_counter()
            if i:  # the first round warms up both
                ours.append(t1 - t0)
                theirs.append(t2 - t1)
    return statistics.median(ours), statistics.median(theirs)


def fwd_bwd(fn, xs):
    o, S = fn(xs)
    (o.sum() + S.sum()).backward()
    for x in xs:
        x.grad = None


def timed(fn, xs, device, reps):
    fwd_bwd(fn, xs)  # warm up
    times = []
    for _ in range(reps):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fwd_bwd(fn, xs)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bmm_rate(device, batch, C, K, reps):
    a = torch.randn(batch, C, K, device=device)
    b = torch.randn(batch, K, C, device=device)
    torch.bmm(a, b)
    times = []
    for _ in range(max(reps, 3)):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        torch.bmm(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return 2.0 * batch * C * K * C / statistics.median(times)


def peak_memory_child(args):
    """Runs one forward + backward in this (fresh) process and prints the peak growth."""
    model, T = args.memory_case.split(":")
    T = int(T)
    # One small call first: the library's one-time allocations (thread pool, BLAS buffers) are
    # not the call's memory.
    fwd_bwd(lambda z: chunked(model, z, args.chunk), inputs(model, 2 * args.chunk, args.heads,
                                                           args.dim, args.device))
    xs = inputs(model, T, args.heads, args.dim, args.device)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fwd_bwd(lambda z: chunked(model, z, args.chunk), xs)
        print(torch.cuda.max_memory_allocated() - base)
    else:
        # The peak resident size during the call over the resident size before it (Linux):
        # the peak (VmHWM) is reset to the current size first (clear_refs 5), so that what the
        # imports and the inputs' construction touched and freed is not counted; where the
        # kernel refuses the reset, the process's lifetime peak (an upper bound).
        with open("/proc/self/statm") as f:
            base = int(f.read().split()[1]) * resource.getpagesize()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            reset = True
        except OSError:
            reset = False
        fwd_bwd(lambda z: chunked(model, z, args.chunk), xs)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        if reset:
            with open("/proc/self/status") as f:
                hwm = [line for line in f if line.startswith("VmHWM:")]
            peak = int(hwm[0].split()[1]) * 1024
        print(max(peak - base, 0))


def peak_memory(args, model, T):
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-case", f"{model}:{T}",
           "--device", args.device, "--heads", str(args.heads), "--dim", str(args.dim),
           "--chunk", str(args.chunk)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[-1])


def sp_rank(rank, world, port, model, T, args, result):
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                           world_size=world)
    xs_full = inputs(model, T, args.heads, args.dim, "cpu")
    n = T // world
    xs = [x.detach()[:, rank * n:(rank + 1) * n].clone().requires_grad_() for x in xs_full]
    fn = lambda z: chunked(model, z, args.chunk, group=dist.group.WORLD)  # noqa: E731
    fwd_bwd(fn, xs)
    times = []
    for _ in range(args.reps):
        dist.barrier()
        t0 = time.perf_counter()
        fwd_bwd(fn, xs)
        dist.barrier()
        times.append(time.perf_counter() - t0)
    if rank == 0:
        result.put(statistics.median(times))
    dist.destroy_process_group()


def sp_time(args, model, T):
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    result = ctx.Queue()
    procs = [ctx.Process(target=sp_rank, args=(r, args.sp_ranks, port, model, T, args, result))
             for r in range(args.sp_ranks)]
    for p in procs:
        p.start()
    t = result.get(timeout=600)
    for p in procs:
        p.join(timeout=60)
    return t


def chunked_only(args, T, device):
    """Forward + backward of the chunked ops alone (CPU): median wall time of --reps and median
    CPU time of the process (all threads: the work done, which load on the machine moves
    less than the wall time), printed and in --json."""
    rows = []
    for model in args.models.split(","):
        xs = inputs(model, T, args.heads, args.dim, device)
        fn = lambda z: chunked(model, z, args.chunk)  # noqa: E731
        fwd_bwd(fn, xs)  # warm up
        walls, cpus = [], []
        for _ in range(args.reps):
            w0, c0 = time.perf_counter(), time.process_time()
            fwd_bwd(fn, xs)
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
        t, c = statistics.median(walls), statistics.median(cpus)
        rows.append({"model": model, "T": T, "heads": args.heads, "seconds": t,
                     "cpu_seconds": c, "tokens_per_s": T / t})
        print(f"{model:12s} chunked {t * 1e3:8.1f} ms ({T / t / 1e3:.1f} k tok/s), "
              f"CPU time of all threads {c * 1e3:.1f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": torch.get_num_threads(), "library": seqpar.library_path(),
                       "cpu_target": seqpar.cpu_capability(),
                       "args": {k: v for k, v in vars(args).items() if k != "memory_case"},
                       "rows": rows}, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--log2-t", type=int, default=16)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--recurrence-log2-t", type=int, default=11)
    ap.add_argument("--sp-ranks", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--chunked-only", action="store_true",
                    help="time only the chunked ops' forward + backward (for A/B runs: "
                         "benchmarks/matrix_state_ab.py)")
    ap.add_argument("--models", default=",".join(MODELS),
                    help="comma-separated, of " + ", ".join(MODELS))
    ap.add_argument("--transformers-log2-t", type=int, default=12,
                    help="T of the KDA comparison with transformers' chunk form")
    ap.add_argument("--memory-case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    unknown = sorted(set(args.models.split(",")) - set(MODELS))
    if unknown:
        ap.error(f"argument --models: unknown model(s) {', '.join(unknown)}; "
                 f"choose from {', '.join(MODELS)}")
    seqpar.load_library()
    if args.memory_case:
        return peak_memory_child(args)

    T, Tr = 2 ** args.log2_t, 2 ** args.recurrence_log2_t
    device = args.device
    machine = platform.processor() or platform.machine()
    if device == "cuda":
        machine = torch.cuda.get_device_name()
    print(f"# matrix_state_bench: {machine}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, cpu target {seqpar.cpu_capability()}; T = 2^{args.log2_t}, H = {args.heads}, "
          f"K = V = {args.dim}, C = {args.chunk}, float32, forward + backward")
    if args.chunked_only:
        return chunked_only(args, T, device)
    rate = bmm_rate(device, args.heads * (T // args.chunk), args.chunk, args.dim, args.reps)
    print(f"# batched matmul ({args.heads * (T // args.chunk)} x ({args.chunk}x{args.dim} @ "
          f"{args.dim}x{args.chunk})): {rate / 1e9:.1f} GFLOP/s")
    rows = []
    for model in args.models.split(","):
        xs = inputs(model, T, args.heads, args.dim, device)
        fn = lambda z: chunked(model, z, args.chunk)  # noqa: E731
        t = timed(fn, xs, device, args.reps)
        flops = chunk_form_flops(model, T, args.heads, args.dim, args.dim, args.chunk)
        xr = inputs(model, Tr, args.heads, args.dim, device)
        tr = timed(lambda z: recurrence(model, z), xr, device, 1)
        row = {"model": model, "T": T, "seconds": t, "tokens_per_s": T / t,
               "matmul_flops": flops, "gflops_per_s": flops / t / 1e9,
               "fraction_of_bmm": flops / t / rate, "recurrence_T": Tr,
               "recurrence_tokens_per_s": Tr / tr, "speedup_over_recurrence": (T / t) / (Tr / tr),
               "peak_memory_bytes": peak_memory(args, model, T),
               "minimum_memory_bytes": minimum_memory(model, T, args.heads, args.dim, args.dim,
                                                      args.chunk)}
        row["memory_over_minimum"] = row["peak_memory_bytes"] / row["minimum_memory_bytes"]
        if device == "cpu" and model != "gla":
            Tt = T if model == "gated_delta" else min(T, 2 ** args.transformers_log2_t)
            xt = xs if Tt == T else inputs(model, Tt, args.heads, args.dim, device)
            tf = transformers_ratio(model, xt, args.chunk, args.reps)
            if tf is not None:
                row.update({"transformers_T": Tt, "forward_seconds": tf[0],
                            "transformers_forward_seconds": tf[1],
                            "forward_speedup_over_transformers": tf[1] / tf[0]})
        if device == "cpu" and args.sp_ranks > 1:
            ts = sp_time(args, model, T)
            row.update({"sp_ranks": args.sp_ranks, "sp_seconds": ts, "sp_speedup": t / ts})
        rows.append(row)
        print(f"{model:12s} chunked {t * 1e3:8.1f} ms ({T / t / 1e6:.2f} M tok/s)  "
              f"matmul {flops / t / 1e9:6.1f} GFLOP/s = {flops / t / rate:5.1%} of bmm  "
              f"recurrence (T=2^{args.recurrence_log2_t}) {Tr / tr / 1e3:7.1f} k tok/s -> "
              f"x{row['speedup_over_recurrence']:.0f}  peak mem {row['peak_memory_bytes'] / 2**20:.0f} MiB "
              f"(x{row['memory_over_minimum']:.2f} of outputs + grads + chunk states)"
              + (f"  forward x{row['forward_speedup_over_transformers']:.2f} transformers' "
                 f"({row['transformers_forward_seconds'] * 1e3:.0f} ms at T={row['transformers_T']})"
                 if "forward_speedup_over_transformers" in row else "")
              + (f"  sp P={args.sp_ranks}: {row['sp_seconds'] * 1e3:.1f} ms (x{row['sp_speedup']:.2f} "
                 f"vs one process)" if "sp_seconds" in row else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "torch": torch.__version__,
                       "threads": torch.get_num_threads(), "bmm_flops_per_s": rate,
                       "args": {k: v for k, v in vars(args).items() if k != "memory_case"},
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
