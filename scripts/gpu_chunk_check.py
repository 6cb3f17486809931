"""The fused CUDA chunk kernels of chunk_gated_delta_rule, chunk_kda and chunk_gla on a GPU (the GPU
session's chunk-check step, run with CUDA_LAUNCH_BLOCKING=1): outputs, final state and the
gradients of q, k, v, g, beta and the initial state, through seqpar's functions on CUDA tensors,
against the same functions on the CPU in float64 (the CPU kernels are tested against a per-step
float64 recurrence in tests/python/test_matrix_state.py). Shapes the CUDA kernels take: chunk 64,
K, V in {64, 128}, float32 / bfloat16 / float16 / float64, several chunks and a partial last one,
with and without initial state and final-state gradient, decays near 1, near 0 (KDA: g in
[-60, -5] per step and key channel) and mixed;
packed sequences (cu_seqlens: empty ones, sequences shorter and longer than a chunk, starts on
and off chunk edges); and the op matrix_chunk_forward called directly, packed or not, so that
a silent fallback to the ATen composition cannot pass for the kernels. Tolerances are the host emulator's
(tests/kernels/cuda/host_emulation/emu_chunk_test.cpp), relative to the largest reference value.

    python scripts/gpu_chunk_check.py [--device cpu]    # cpu: a dry run of the script itself

Prints one line per case and exits 1 if anything is off.
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
import seqpar  # noqa: E402

TOL = {torch.float64: (1e-10, 1e-10), torch.float32: (5e-6, 2e-5), torch.bfloat16: (3e-2, 3e-2),
       torch.float16: (5e-3, 5e-3)}
CANCELLING_DG = {torch.float64: 1e-9, torch.float32: 1e-2, torch.bfloat16: 5e-2, torch.float16: 5e-2}


def make(model, B, T, H, K, V, regime, seed, rows=None):
    """Inputs in float64; rows: the states' leading size (B, or one per packed sequence)."""
    rows = B if rows is None else rows
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.rand(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    q = torch.randn(B, T, H, K, generator=gen, dtype=torch.float64)
    k = F.normalize(torch.randn(B, T, H, K, generator=gen, dtype=torch.float64), dim=-1)
    v = torch.randn(B, T, H, V, generator=gen, dtype=torch.float64)
    gshape = (B, T, H) if model == "gated_delta" else (B, T, H, K)  # KDA, GLA: per key channel
    near0 = -5 - 55 * r(*gshape) if model == "kda" else -10 - 30 * r(*gshape)
    g = {"mid": -2 * r(*gshape), "near1": -1e-4 * r(*gshape), "near0": near0}[regime]
    beta = None if model == "gla" else {"mid": r(B, T, H), "near1": 1 - 1e-3 * r(B, T, H),
                                        "near0": 1e-3 * r(B, T, H)}[regime]
    s0 = torch.randn(rows, H, K, V, generator=gen, dtype=torch.float64)
    do = torch.randn(B, T, H, V, generator=gen, dtype=torch.float64)
    ds = torch.randn(rows, H, K, V, generator=gen, dtype=torch.float64)
    return q, k, v, g, beta, s0, do, ds


def call(model, xs, s0, scale=None, cu=None):
    q, k, v, g, beta = xs
    if model == "gla":
        return seqpar.chunk_gla(q, k, v, g, scale=scale, initial_state=s0, output_final_state=True,
                                cu_seqlens=cu)
    if model == "kda":
        return seqpar.chunk_kda(q, k, v, g, beta, scale=scale, initial_state=s0,
                                output_final_state=True, cu_seqlens=cu)
    return seqpar.chunk_gated_delta_rule(q, k, v, g, beta, scale=scale, initial_state=s0,
                                         output_final_state=True, cu_seqlens=cu)


def cu_of(lengths):
    return torch.tensor([0] + torch.tensor(lengths).cumsum(0).tolist(), dtype=torch.int64)


def rel(x, ref):
    x = x.detach().cpu().double()
    if not torch.isfinite(x).all():
        return float("inf")
    return ((x - ref).abs().max() / ref.abs().max().clamp_min(1e-300)).item()


def case(dev, model, dtype, B, T, H, K, V, h0, gfs, regime, seed, lengths=None):
    """lengths: packed sequences (B = 1, T their sum), one state row each."""
    cu = cu_of(lengths) if lengths else None
    q, k, v, g, beta, s0, do, ds = make(model, B, T, H, K, V, regime, seed,
                                        len(lengths) if lengths else None)
    cast = [x for x in (q, k, v, g, beta) if x is not None]
    # The same rounded values on both sides: the reference sees the dtype's inputs in float64.
    low = [x.to(dtype) for x in cast]
    ref_in = [x.double().requires_grad_() for x in low]
    dev_in = [x.to(dev).requires_grad_() for x in low]
    state_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    s0r = s0.to(state_dtype).double().requires_grad_() if h0 else None
    s0d = s0.to(state_dtype).to(dev).requires_grad_() if h0 else None
    if model == "gla":
        ref_in.insert(4, None)
        dev_in.insert(4, None)
    o_r, S_r = call(model, ref_in, s0r, cu=cu)
    o_d, S_d = call(model, dev_in, s0d, cu=None if cu is None else cu.to(dev))
    do_low = do.to(dtype)
    loss_r = (o_r * do_low.double()).sum() + ((S_r * ds.to(state_dtype).double()).sum() if gfs else 0)
    loss_d = (o_d * do_low.to(dev)).float().sum() if dtype != torch.float64 else (o_d * do_low.to(dev)).sum()
    if gfs:
        loss_d = loss_d + (S_d * ds.to(state_dtype).to(dev)).sum()
    loss_r.backward()
    loss_d.backward()
    names = ["q", "k", "v", "g", "beta"]
    results = [("o", rel(o_d, o_r.detach()), False), ("S_T", rel(S_d, S_r.detach()), False)]
    for name, a, b in zip(names, dev_in, ref_in):
        if a is not None:
            results.append(("d" + name, rel(a.grad, b.grad), True))
    if h0:
        results.append(("dS_0", rel(s0d.grad, s0r.grad), True))
    ok = True
    for name, e, grad in results:
        tol = TOL[dtype][1 if grad else 0]
        if name == "dg" and regime == "near0":
            tol = CANCELLING_DG[dtype]
        ok = ok and e <= tol
    line = " ".join(f"{n} {e:.1e}" for n, e, _ in results)
    packed = f" seqlens={','.join(map(str, lengths))}" if lengths else ""
    print(f"{'ok' if ok else 'FAIL'} {model} {str(dtype)[6:]} B={B} T={T} H={H} K={K} V={V} "
          f"h0={int(h0)} dS_T={int(gfs)} {regime}{packed}: {line}", flush=True)
    return ok


def op_is_fused(dev, model, dtype, K, V, lengths=None):
    """matrix_chunk_forward on `dev` equals seqpar's function there (the op is the fused kernel);
    packed (lengths): the saved states have ceil(T / 64) + N - 1 slots."""
    cu = cu_of(lengths).to(dev) if lengths else None
    rows = len(lengths) if lengths else 1
    q, k, v, g, beta, s0, _, _ = make(model, 1, 100, 2, K, V, "mid", 7, rows)
    xs = [x.to(dtype).to(dev) for x in (q, k, v, g)]
    b = beta.to(dtype).to(dev) if beta is not None else None
    st = s0.to(torch.float64 if dtype == torch.float64 else torch.float32).to(dev)
    rec = model
    o, S, states = torch.ops.seqpar.matrix_chunk_forward(rec, *xs, b, 0.1, st, 64, cu)
    o2, S2 = call(model, xs + [b], st, scale=0.1, cu=cu)
    room = 2 + (rows - 1 if lengths else 0)
    ok = states.shape == (1, 2, room, K, V) and torch.equal(o, o2) and torch.equal(S, S2)
    packed = f" seqlens={','.join(map(str, lengths))}" if lengths else ""
    print(f"{'ok' if ok else 'FAIL'} {model} {str(dtype)[6:]} K={K} V={V}{packed}: the op and the "
          f"function agree bitwise (chunk states {tuple(states.shape)})", flush=True)
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    seqpar.load_library()
    dev = torch.device(args.device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            print("gpu_chunk_check: no CUDA device")
            return 3
        assert torch._C._dispatch_has_kernel_for_dispatch_key("seqpar::matrix_chunk_forward", "CUDA"), \
            "libseqpar.so was built without the CUDA chunk kernels"
        print(f"# gpu_chunk_check on {torch.cuda.get_device_name()}, torch {torch.__version__}")
    T = 2 * 64 + 37
    cases = []
    seed = 1
    for model in ("gated_delta", "gla", "kda"):
        for dtype, B, H, TT, K, V, h0, gfs, regime in [
                (torch.float32, 1, 2, T, 64, 64, True, True, "mid"),
                (torch.float32, 1, 2, T, 128, 128, False, False, "near1"),
                (torch.float32, 2, 1, T, 64, 128, True, False, "near0"),
                (torch.float32, 1, 1, T, 128, 64, False, True, "mid"),
                (torch.float32, 1, 2, 4096 + 5, 64, 64, True, True, "mid"),
                (torch.bfloat16, 1, 2, T, 64, 64, True, True, "mid"),
                (torch.bfloat16, 1, 2, T, 128, 128, True, True, "near0"),
                (torch.float16, 1, 1, T, 64, 64, True, False, "mid"),
                (torch.float64, 1, 2, T, 64, 64, True, True, "mid"),
                (torch.float64, 1, 1, T, 64, 128, False, True, "near0")]:
            cases.append((model, dtype, B, TT, H, K, V, h0, gfs, regime, seed))
            seed += 1
        # Packed sequences: B = 1, T the sum of the lengths.
        for dtype, H, K, V, h0, gfs, lengths in [
                (torch.float32, 2, 64, 64, True, True, [0, 37, 64, 0, 130, 1, 0]),
                (torch.float32, 1, 128, 128, False, True, [64, 100, 0, 29]),
                (torch.bfloat16, 2, 64, 64, True, True, [0, 150, 20]),
                (torch.float64, 1, 64, 64, True, True, [5, 70, 0, 0])]:
            cases.append((model, dtype, 1, sum(lengths), H, K, V, h0, gfs, "mid", seed, lengths))
            seed += 1
    ok = True
    for c in cases:
        ok = case(dev, *c) and ok
    for model in ("gated_delta", "gla", "kda"):
        for dtype, K, V in [(torch.float32, 64, 64), (torch.bfloat16, 128, 128)]:
            ok = op_is_fused(dev, model, dtype, K, V) and ok
        ok = op_is_fused(dev, model, torch.float32, 64, 64, [30, 0, 70]) and ok
    print("gpu_chunk_check:", "all passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
