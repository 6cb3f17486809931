"""LibTorch-side smoke test for scripts/gpu_session.sh (run with CUDA_LAUNCH_BLOCKING=1).

1. torch.ops.seqpar.scan / scan_backward / scan_summary on CUDA against the same ops on the
   CPU (the CPU engine is tested against fp64 references in the regular suite), across dtypes,
   memory layouts (channels last, time contiguous, strided views), reverse, h0, T = 0 and 1,
   plus autograd through seqpar.scan;
2. a one-rank NCCL process group: sp_comm_check (closed-form collective checks) and sp_scan
   equal to the single-device scan.
Prints one line per case and exits 1 if anything is off.
"""
import datetime
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
import seqpar  # noqa: E402

seqpar.load_library()
# SEQPAR_SMOKE_DEVICE=cpu runs the same script on the CPU (a check of the script itself).
dev = torch.device(os.environ.get("SEQPAR_SMOKE_DEVICE", "cuda:0"))
if dev.type == "cuda":
    assert torch._C._dispatch_has_kernel_for_dispatch_key("seqpar::scan", "CUDA"), \
        "libseqpar.so was built without the CUDA kernels"
failures = 0
EPS = {torch.float32: 1e-5, torch.float64: 1e-12, torch.bfloat16: 3e-2, torch.float16: 4e-3,
       torch.complex64: 1e-5}


def make(shape, layout, dtype, g):
    """(B, T, D) in the given memory layout; a in (0.5, 1)."""
    B, T, D = shape
    def raw(lo, hi):
        x = lo + (hi - lo) * torch.rand(B, T, D, generator=g, dtype=torch.float64)
        if dtype.is_complex:
            x = torch.polar(x, 0.3 * torch.randn(B, T, D, generator=g, dtype=torch.float64)) if lo > 0 \
                else torch.complex(x, torch.rand(B, T, D, generator=g, dtype=torch.float64) - 0.5)
        return x.to(dtype)
    a, b = raw(0.5, 1.0), raw(-1.0, 1.0)
    if layout == "time":
        a, b = (x.transpose(1, 2).contiguous().transpose(1, 2) for x in (a, b))
    elif layout == "strided":
        a, b = (torch.cat([x, x], dim=2)[:, :, ::2] for x in (a, b))
    return a, b


def close(name, got, want):
    global failures
    tol = EPS[want.dtype if want.dtype in EPS else torch.float32]
    got, want = got.cpu().to(torch.complex128 if want.is_complex() else torch.float64), \
        want.to(torch.complex128 if want.is_complex() else torch.float64)
    scale = max(1.0, want.abs().max().item() if want.numel() else 1.0)
    err = (got - want).abs().max().item() / scale if want.numel() else 0.0
    ok = got.shape == want.shape and err <= tol
    if not ok:
        failures += 1
    return ok, err


g = torch.Generator().manual_seed(0)
for dtype in [torch.float32, torch.bfloat16, torch.float16, torch.complex64, torch.float64]:
    for shape in [(2, 1000, 64), (3, 777, 10), (2, 20001, 3), (1, 1, 5), (2, 0, 4), (1, 65537, 1)]:
        for layout in ["channels", "time", "strided"]:
            for reverse in [False, True]:
                a, b = make(shape, layout, dtype, g)
                h0 = torch.randn(shape[0], shape[2], generator=g, dtype=torch.float64).to(dtype)
                gh = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
                gl = torch.randn(shape[0], shape[2], generator=g, dtype=torch.float64).to(dtype)
                cpu = torch.ops.seqpar.scan(a, b, h0, reverse)
                gpu = torch.ops.seqpar.scan(a.to(dev), b.to(dev), h0.to(dev), reverse)
                res = [close("h", gpu[0], cpu[0]), close("h_last", gpu[1], cpu[1])]
                h = cpu[0]
                cb = torch.ops.seqpar.scan_backward(a, h, h0, gh, gl, reverse)
                gb = torch.ops.seqpar.scan_backward(a.to(dev), h.to(dev), h0.to(dev), gh.to(dev),
                                                    gl.to(dev), reverse)
                res += [close(n, x, y) for n, x, y in zip(("grad_a", "grad_b", "grad_h0"), gb, cb)]
                cs = torch.ops.seqpar.scan_summary(a, b, reverse)
                gs = torch.ops.seqpar.scan_summary(a.to(dev), b.to(dev), reverse)
                res += [close(n, x, y) for n, x, y in zip(("A", "B"), gs, cs)]
                ok = all(r[0] for r in res)
                print(f"{'ok' if ok else 'FAIL'} {str(dtype)[6:]:10s} {str(shape):16s} {layout:8s} "
                      f"rev={int(reverse)} max rel diff to CPU op {max(r[1] for r in res):.2e}")

# Autograd through seqpar.scan on CUDA equals autograd on the CPU.
for dtype in [torch.float32, torch.complex64]:
    a, b = make((2, 3000, 16), "channels", dtype, g)
    grads = []
    for d in ("cpu", dev):
        ra, rb = (x.detach().to(d).clone().requires_grad_() for x in (a, b))
        h, hl = seqpar.scan(ra, rb)
        (h.abs().sum() + hl.abs().sum()).backward()
        grads.append((ra.grad, rb.grad))
    res = [close("ga", grads[1][0], grads[0][0]), close("gb", grads[1][1], grads[0][1])]
    ok = all(r[0] for r in res)
    print(f"{'ok' if ok else 'FAIL'} autograd {dtype} max rel diff {max(r[1] for r in res):.2e}")

# One-rank NCCL process group.
try:
    import torch.distributed as dist
    store = torch.distributed.HashStore()
    backend = "nccl" if dev.type == "cuda" else "gloo"
    dist.init_process_group(backend, store=store, rank=0, world_size=1,
                            timeout=datetime.timedelta(seconds=60))
    report = torch.ops.seqpar.sp_comm_check(dist.group.WORLD.group_name)
    print(f"ok sp_comm_check over {backend}:", report)
    a, b = make((2, 5000, 32), "channels", torch.float32, g)
    a, b = a.to(dev), b.to(dev)
    h, hl = torch.ops.seqpar.sp_scan(a, b, None, False, dist.group.WORLD.group_name)
    rh, rhl = torch.ops.seqpar.scan(a, b, None, False)
    res = [close("h", h, rh.cpu()), close("h_last", hl, rhl.cpu())]
    ok = all(r[0] for r in res)
    print(f"{'ok' if ok else 'FAIL'} sp_scan over a one-rank {backend} group, max rel diff to "
          f"the scan {max(r[1] for r in res):.2e}")
    dist.destroy_process_group()
except Exception as e:  # noqa: BLE001 -- reported, counted, and the session goes on
    failures += 1
    print("FAIL one-rank process group:", repr(e))

print(f"torch-smoke: {failures} failures")
sys.exit(1 if failures else 0)
