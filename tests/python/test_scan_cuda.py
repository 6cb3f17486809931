"""GPU tests of the CUDA scan kernels (torch.ops.seqpar.scan / scan_backward / scan_summary).

Every comparison is made against an fp64 (complex128) reference, and the tolerance is stated
relative to a same-precision baseline measured on the same inputs (docs/design.md rule 8):
  * short and medium T: a naive PyTorch loop `h = a_t * h + b_t` in the input dtype;
  * long T (>= 2^20 steps, where a Python loop is too slow): seqpar's CPU op, which accumulates
    in the same precision as the CUDA kernel.
The kernel passes when  max_err(kernel) <= FACTOR * max_err(baseline) + floor,  with floor a
few ulps of the output dtype times the output's magnitude (so that an exact baseline does not
demand an exact kernel). Max and mean errors are printed (pytest -s shows them).

Without a CUDA device the whole module is skipped with the reason. The library is the one
conftest.py loads (python/seqpar: $SEQPAR_LIBRARY, else build/src, else other build folders);
on a GPU machine run  SEQPAR_LIBRARY=build-cuda/src/libseqpar.so python -m pytest -s <this file>.
"""
import os
import sys

import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip(
        "no CUDA device visible to PyTorch (torch.cuda.is_available() is False); the CUDA "
        "scan tests need a GPU and a seqpar build with -DSEQPAR_WITH_CUDA=ON",
        allow_module_level=True,
    )


def _load_seqpar():
    """conftest.py has normally loaded the library (python/seqpar, $SEQPAR_LIBRARY first);
    this repeats that for a standalone run of this file."""
    try:
        torch.ops.seqpar.scan.default
        return
    except (AttributeError, RuntimeError):
        pass
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path.insert(0, os.path.join(root, "python"))
    import seqpar

    seqpar.load_library()


_load_seqpar()
if not torch._C._dispatch_has_kernel_for_dispatch_key("seqpar::scan", "CUDA"):
    pytest.skip("the loaded libseqpar.so was built without CUDA; point SEQPAR_LIBRARY at a CUDA "
                "build, e.g. SEQPAR_LIBRARY=build-cuda/src/libseqpar.so", allow_module_level=True)

DEV = torch.device("cuda", 0)
FACTOR = 4.0
DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.complex64, torch.float64]
EPS = {torch.float32: 2.0**-23, torch.bfloat16: 2.0**-7, torch.float16: 2.0**-10,
       torch.complex64: 2.0**-23, torch.float64: 2.0**-52}


def ref_dtype(dtype):
    return torch.complex128 if dtype.is_complex else torch.float64


def make_inputs(batch, time, channels, dtype, layout="channels", a_low=0.5, seed=0):
    """a with |a| in (a_low, 1), b ~ N(0, 1), h0 ~ N(0, 1); on the GPU in the given layout.

    layout: "channels" (contiguous, channels fastest), "time" (time fastest), "strided"
    (every other channel of a wider tensor, and every other time step).
    """
    g = torch.Generator().manual_seed(seed)
    shape = (batch, time) + tuple(channels if isinstance(channels, tuple) else (channels,))
    mag = a_low + (1 - a_low) * torch.rand(shape, generator=g, dtype=torch.float64)
    if dtype.is_complex:
        phase = 0.3 * torch.randn(shape, generator=g, dtype=torch.float64)
        a = torch.polar(mag, phase)
        b = torch.complex(torch.randn(shape, generator=g, dtype=torch.float64),
                          torch.randn(shape, generator=g, dtype=torch.float64))
        h0 = torch.complex(torch.randn(shape[:1] + shape[2:], generator=g, dtype=torch.float64),
                           torch.randn(shape[:1] + shape[2:], generator=g, dtype=torch.float64))
    else:
        a = mag
        b = torch.randn(shape, generator=g, dtype=torch.float64)
        h0 = torch.randn(shape[:1] + shape[2:], generator=g, dtype=torch.float64)
    a, b, h0 = (x.to(dtype) for x in (a, b, h0))
    return tuple(to_layout(x, layout) for x in (a, b)) + (h0.to(DEV),)


def to_layout(x, layout):
    x = x.to(DEV)
    if layout == "channels":
        return x.contiguous()
    if layout == "time":
        perm = [0] + list(range(2, x.dim())) + [1]
        inv = [0, x.dim() - 1] + list(range(1, x.dim() - 1))
        return x.permute(perm).contiguous().permute(inv)
    if layout == "strided":
        wide = torch.zeros(x.shape[:1] + (2 * x.shape[1],) + x.shape[2:-1] + (2 * x.shape[-1],),
                           dtype=x.dtype, device=x.device)
        view = wide[:, ::2, ..., ::2]
        view.copy_(x)
        return view
    raise ValueError(layout)


def naive_scan(a, b, h0=None, reverse=False):
    """h_t = a_t * h_{t-1} + b_t in the dtype of a (a same-precision PyTorch baseline)."""
    T = a.shape[1]
    h = torch.zeros_like(a[:, 0]) if h0 is None else h0.to(a.dtype).clone()
    out = torch.empty_like(a)
    steps = range(T - 1, -1, -1) if reverse else range(T)
    for t in steps:
        h = a[:, t] * h + b[:, t]
        out[:, t] = h
    return out, h


def reference_scan(a, b, h0=None, reverse=False):
    """fp64 (complex128) reference on the CPU."""
    rd = ref_dtype(a.dtype)
    return naive_scan(a.cpu().to(rd), b.cpu().to(rd), None if h0 is None else h0.cpu().to(rd),
                      reverse)


def reference_scan_long(a, b, h0=None, chunk=1024):
    """fp64 reference for long T: within-chunk closed form via cumprod (all chunks at once),
    then a sequential pass over chunk carries. Needs |a| bounded away from 0 (a in (0.99, 1))."""
    rd = ref_dtype(a.dtype)
    a64, b64 = a.to(rd), b.to(rd)
    B, T = a64.shape[:2]
    rest = a64.shape[2:]
    n = (T + chunk - 1) // chunk
    pad = n * chunk - T
    if pad:
        a64 = torch.cat([a64, torch.ones((B, pad) + rest, dtype=rd, device=a.device)], 1)
        b64 = torch.cat([b64, torch.zeros((B, pad) + rest, dtype=rd, device=a.device)], 1)
    ac = a64.reshape((B, n, chunk) + rest)
    bc = b64.reshape((B, n, chunk) + rest)
    P = torch.cumprod(ac, dim=2)
    local = P * torch.cumsum(bc / P, dim=2)  # chunk-local scan from state 0
    h = torch.zeros((B,) + rest, dtype=rd, device=a.device) if h0 is None else h0.to(rd)
    out = torch.empty_like(local)
    for k in range(n):
        out[:, k] = P[:, k] * h.unsqueeze(1) + local[:, k]
        h = out[:, k, -1]
    out = out.reshape((B, n * chunk) + rest)[:, :T]
    return out, out[:, -1]


def reference_backward(a, h, h0, grad_h, grad_h_last, reverse=False):
    """fp64 (complex128) adjoint on the CPU, straight from the formula in scan_params.h."""
    rd = ref_dtype(a.dtype)
    c = lambda x: None if x is None else x.detach().cpu().to(rd)
    a, h, h0, grad_h, grad_h_last = c(a), c(h), c(h0), c(grad_h), c(grad_h_last)
    T = a.shape[1]
    order = list(range(T - 1, -1, -1)) if reverse else list(range(T))  # scan order
    lam = torch.zeros_like(a[:, 0]) if grad_h_last is None else grad_h_last.clone()
    grad_a, grad_b = torch.empty_like(a), torch.empty_like(a)
    for k in range(T - 1, -1, -1):
        t = order[k]
        g = 0 if grad_h is None else grad_h[:, t]
        lam = lam + g if k == T - 1 else g + a[:, order[k + 1]].conj() * lam
        h_prev = h[:, order[k - 1]] if k > 0 else (torch.zeros_like(lam) if h0 is None else h0)
        grad_a[:, t] = lam * h_prev.conj()
        grad_b[:, t] = lam
    grad_h0 = a[:, order[0]].conj() * lam if T > 0 else lam
    return grad_a, grad_b, grad_h0


def max_mean_err(x, ref):
    d = (x.cpu().to(ref.dtype) - ref.cpu()).abs()
    return d.max().item(), d.mean().item()


def check(name, got, baseline, ref, dtype):
    """Asserts got's error <= FACTOR * baseline's error + floor and prints both."""
    err, mean = max_mean_err(got, ref)
    base, base_mean = max_mean_err(baseline, ref)
    scale = max(ref.abs().max().item(), 1.0)
    floor = 8 * EPS[dtype] * scale
    print(f"{name}: kernel max {err:.3g} mean {mean:.3g} | baseline max {base:.3g} "
          f"mean {base_mean:.3g} | allowed {FACTOR * base + floor:.3g}")
    assert err <= FACTOR * base + floor, f"{name}: error {err} > {FACTOR} x {base} + {floor}"


SHAPES = [(2, 1000, 33), (1, 4097, 1), (3, 257, 8), (2, 300, 3), (1, 70, 100), (2, 129, (4, 5))]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["channels", "time", "strided"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)).replace(", ", "x"))
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_h0", [False, True])
def test_forward(dtype, layout, shape, reverse, with_h0):
    B, T, D = shape
    a, b, h0 = make_inputs(B, T, D, dtype, layout)
    h0 = h0 if with_h0 else None
    h, h_last = torch.ops.seqpar.scan(a, b, h0, reverse)
    assert h.shape == a.shape and h.dtype == dtype and h.device == a.device
    ref_h, ref_last = reference_scan(a, b, h0, reverse)
    base_h, base_last = naive_scan(a, b, h0, reverse)
    check("h", h, base_h, ref_h, dtype)
    check("h_last", h_last, base_last, ref_last, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["channels", "time"])
def test_forward_matches_cpu_op(dtype, layout):
    a, b, h0 = make_inputs(3, 5000, 17, dtype, layout)
    h, h_last = torch.ops.seqpar.scan(a, b, h0, False)
    h_cpu, last_cpu = torch.ops.seqpar.scan(a.cpu(), b.cpu(), h0.cpu(), False)
    ref_h, ref_last = reference_scan(a, b, h0)
    check("h vs cpu op", h, h_cpu, ref_h, dtype)
    check("h_last vs cpu op", h_last, last_cpu, ref_last, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.complex64], ids=str)
@pytest.mark.parametrize("bd", [(1, 1), (1, 3), (4, 4)], ids=lambda s: f"B{s[0]}D{s[1]}")
@pytest.mark.parametrize("layout", ["channels", "time"])
def test_long_sequence(dtype, bd, layout):
    """T = 2^20 + 3 with a in (0.99, 1): many tiles chained by the look-back on one sequence."""
    B, D = bd
    T = (1 << 20) + 3
    a, b, h0 = make_inputs(B, T, D, dtype, layout, a_low=0.99, seed=1)
    h, h_last = torch.ops.seqpar.scan(a, b, h0, False)
    ref_h, ref_last = reference_scan_long(a, b, h0)
    base_h, base_last = torch.ops.seqpar.scan(a.cpu(), b.cpu(), h0.cpu(), False)
    check("h (long)", h, base_h, ref_h.cpu(), dtype)
    check("h_last (long)", h_last, base_last, ref_last.cpu(), dtype)
    # reverse on the same data: compare with the flipped forward reference
    hr, hr_last = torch.ops.seqpar.scan(a.flip(1), b.flip(1), h0, True)
    check("h (long, reverse)", hr.flip(1), base_h, ref_h.cpu(), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["channels", "time", "strided"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_h0", [False, True])
@pytest.mark.parametrize("grads", ["both", "h_only", "last_only"])
def test_backward_matches_cpu(dtype, layout, reverse, with_h0, grads):
    B, T, D = 2, 777, 19
    a, b, h0 = make_inputs(B, T, D, dtype, layout, seed=2)
    h0 = h0 if with_h0 else None
    h, _ = torch.ops.seqpar.scan(a, b, h0, reverse)
    g = to_layout(torch.randn(a.shape, dtype=torch.float64).to(dtype), layout)
    gl = torch.randn(h0.shape if h0 is not None else (B, D), dtype=torch.float64).to(dtype).to(DEV)
    gh = None if grads == "last_only" else g
    ghl = None if grads == "h_only" else gl
    ga, gb, gh0 = torch.ops.seqpar.scan_backward(a, h, h0, gh, ghl, reverse)
    r_ga, r_gb, r_gh0 = reference_backward(a, h, h0, gh, ghl, reverse)
    # same-precision baseline: the CPU op in the input dtype
    cc = lambda x: None if x is None else x.cpu()
    b_ga, b_gb, b_gh0 = torch.ops.seqpar.scan_backward(cc(a), cc(h), cc(h0), cc(gh), cc(ghl), reverse)
    check("grad_a", ga, b_ga, r_ga, dtype)
    check("grad_b", gb, b_gb, r_gb, dtype)
    check("grad_h0", gh0, b_gh0, r_gh0, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex64], ids=str)
@pytest.mark.parametrize("reverse", [False, True])
def test_backward_against_autograd_of_naive_loop(dtype, reverse):
    """The fused adjoint equals autograd through the naive loop (PyTorch's complex convention)."""
    a, b, h0 = make_inputs(2, 150, 5, dtype, "channels", seed=3)
    rd = ref_dtype(dtype)
    a64, b64, h064 = (x.detach().cpu().to(rd).requires_grad_() for x in (a, b, h0))
    h_ref, last_ref = naive_scan(a64, b64, h064, reverse)
    g = torch.randn(h_ref.shape, dtype=rd)
    gl = torch.randn(last_ref.shape, dtype=rd)
    torch.autograd.backward([h_ref, last_ref], [g, gl])
    h, _ = torch.ops.seqpar.scan(a, b, h0, reverse)
    ga, gb, gh0 = torch.ops.seqpar.scan_backward(a, h, h0, g.to(dtype).to(DEV), gl.to(dtype).to(DEV), reverse)
    tol = 1e-9 if dtype == torch.float64 else 2e-4
    for name, got, ref in (("grad_a", ga, a64.grad), ("grad_b", gb, b64.grad), ("grad_h0", gh0, h064.grad)):
        err = (got.cpu().to(rd) - ref).abs().max().item() / max(ref.abs().max().item(), 1.0)
        print(f"{name}: relative max error {err:.3g}")
        assert err < tol, name


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.complex64], ids=str)
@pytest.mark.parametrize("layout", ["channels", "time"])
def test_autograd_cuda_matches_cpu(dtype, layout):
    a, b, h0 = make_inputs(2, 3000, 24, dtype, layout, seed=4)
    outs = []  # [grads on the GPU, grads on the CPU]
    for dev in (DEV, torch.device("cpu")):
        x = [t.detach().to(dev).requires_grad_() for t in (a, b, h0)]
        h, last = torch.ops.seqpar.scan(x[0], x[1], x[2], False)
        (h.real.float().sum() + 3 * last.real.float().sum()).backward()
        outs.append([t.grad for t in x])
    # fp64 reference: the adjoint of loss = sum(real(h)) + 3 sum(real(h_last)), i.e. grad_h = 1
    # and grad_h_last = 3 (PyTorch's convention for the gradient of real() of a complex tensor)
    h, _ = naive_scan(*(t.cpu().to(ref_dtype(dtype)) for t in (a, b, h0)))
    ones = torch.ones_like(h)
    ref = reference_backward(a, h, h0, ones, 3 * ones[:, 0], False)
    for i, name in enumerate(("grad_a", "grad_b", "grad_h0")):
        check(name, outs[0][i], outs[1][i], ref[i], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["channels", "time", "strided"])
@pytest.mark.parametrize("reverse", [False, True])
def test_summary(dtype, layout, reverse):
    a, b, _ = make_inputs(3, 5000, 9, dtype, layout, a_low=0.999, seed=5)
    A, Bs = torch.ops.seqpar.scan_summary(a, b, reverse)
    rd = ref_dtype(dtype)
    A_ref = a.cpu().to(rd).prod(dim=1)
    _, B_ref = reference_scan(a, b, None, reverse)
    A_cpu, B_cpu = torch.ops.seqpar.scan_summary(a.cpu(), b.cpu(), reverse)
    check("A", A, A_cpu, A_ref, dtype)
    check("B", Bs, B_cpu, B_ref, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64], ids=str)
def test_empty_problems(dtype):
    a, b, h0 = make_inputs(2, 5, 3, dtype, "channels")
    e = a[:, :0]
    h, h_last = torch.ops.seqpar.scan(e, b[:, :0], h0, False)
    assert h.shape == e.shape and torch.equal(h_last, h0)
    h, h_last = torch.ops.seqpar.scan(e, b[:, :0], None, True)
    assert torch.count_nonzero(h_last) == 0
    ga, gb, gh0 = torch.ops.seqpar.scan_backward(e, e, h0, None, h0 * 2, False)
    assert ga.shape == e.shape and torch.equal(gh0, h0 * 2)
    A, Bs = torch.ops.seqpar.scan_summary(e, e, False)
    assert torch.all(A == 1) and torch.count_nonzero(Bs) == 0
    h, h_last = torch.ops.seqpar.scan(a[:0], b[:0], None, False)
    assert h.shape[0] == 0 and h_last.shape[0] == 0


def test_opcheck():
    for dtype in (torch.float32, torch.bfloat16):
        a, b, h0 = make_inputs(2, 100, 7, dtype, "channels")
        torch.library.opcheck(torch.ops.seqpar.scan.default, (a, b, h0, False))
        torch.library.opcheck(torch.ops.seqpar.scan.default, (a, b, None, True))
        torch.library.opcheck(torch.ops.seqpar.scan_summary.default, (a, b, False))
        h, _ = torch.ops.seqpar.scan(a, b, h0, False)
        torch.library.opcheck(torch.ops.seqpar.scan_backward.default, (a, h, h0, b, h0, False))


def test_non_default_stream():
    a, b, h0 = make_inputs(4, 20000, 33, torch.float32, "channels", seed=6)
    expected, expected_last = torch.ops.seqpar.scan(a, b, h0, False)
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        h, h_last = torch.ops.seqpar.scan(a, b, h0, False)
        ga, gb, gh0 = torch.ops.seqpar.scan_backward(a, h, h0, b, h0, False)
    torch.cuda.current_stream().wait_stream(side)
    # The default mode's look-back may combine tiles in a different order from run to run
    # (docs/cuda.md, "Determinism"): same values up to rounding, not bitwise.
    close = lambda x, y: torch.allclose(x, y, rtol=1e-5, atol=1e-5)  # noqa: E731
    assert close(h, expected) and close(h_last, expected_last)
    ga2, gb2, gh02 = torch.ops.seqpar.scan_backward(a, expected, h0, b, h0, False)
    assert close(ga, ga2) and close(gb, gb2) and close(gh0, gh02)


@pytest.mark.parametrize("shape", [(1, (1 << 20) + 5, 1), (2, 40000, 64)])
def test_deterministic_mode_is_bitwise_repeatable(shape):
    """With torch.use_deterministic_algorithms(True) every tile waits for its predecessor's
    inclusive prefix (one fixed composition order): forward, backward and summary are bitwise
    identical across runs and streams, and agree with the default mode up to rounding."""
    B, T, D = shape
    a, b, h0 = make_inputs(B, T, D, torch.float32, "time" if D == 1 else "channels",
                           a_low=0.99, seed=7)
    default = torch.ops.seqpar.scan(a, b, h0, False)[0]
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        first = torch.ops.seqpar.scan(a, b, h0, False)
        first_bwd = torch.ops.seqpar.scan_backward(a, first[0], h0, b, h0, False)
        first_sum = torch.ops.seqpar.scan_summary(a, b, False)
        side = torch.cuda.Stream()
        for i in range(4):
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side if i % 2 else torch.cuda.current_stream()):
                again = torch.ops.seqpar.scan(a, b, h0, False)
                again_bwd = torch.ops.seqpar.scan_backward(a, first[0], h0, b, h0, False)
                again_sum = torch.ops.seqpar.scan_summary(a, b, False)
            torch.cuda.current_stream().wait_stream(side)
            for x, y in zip(first + first_bwd + first_sum, again + again_bwd + again_sum):
                assert torch.equal(x, y)
    finally:
        torch.use_deterministic_algorithms(was)
    assert torch.allclose(first[0], default, rtol=1e-4, atol=1e-4)


def test_misaligned_views_use_the_scalar_path():
    """Time-contiguous views whose start is not 16-byte aligned must still be right."""
    a, b, h0 = make_inputs(3, 1001, 2, torch.float32, "time", seed=8)
    for off in (1, 2, 3):
        a2, b2 = a[:, off:], b[:, off:]
        h, h_last = torch.ops.seqpar.scan(a2, b2, h0, False)
        ref_h, _ = reference_scan(a2, b2, h0)
        base_h, _ = naive_scan(a2, b2, h0)
        check(f"h (offset {off})", h, base_h, ref_h, torch.float32)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_inputs_on_two_devices_are_rejected():
    a, b, h0 = make_inputs(2, 10, 3, torch.float32, "channels")
    with pytest.raises(RuntimeError, match="'b'"):
        torch.ops.seqpar.scan(a, b.to("cuda:1"), h0, False)
    with pytest.raises(RuntimeError, match="'h0'"):
        torch.ops.seqpar.scan(a, b, h0.to("cuda:1"), False)
    h, _ = torch.ops.seqpar.scan(a, b, h0, False)
    with pytest.raises(RuntimeError, match="'grad_h'"):
        torch.ops.seqpar.scan_backward(a, h, h0, b.to("cuda:1"), None, False)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_second_device_runs_under_its_own_guard():
    a, b, h0 = make_inputs(2, 5000, 3, torch.float32, "channels")
    a1, b1, h01 = a.to("cuda:1"), b.to("cuda:1"), h0.to("cuda:1")
    h, _ = torch.ops.seqpar.scan(a, b, h0, False)
    h1, _ = torch.ops.seqpar.scan(a1, b1, h01, False)  # current device is still cuda:0
    assert h1.device == a1.device and torch.equal(h1.cpu(), h.cpu())


def test_cpu_input_with_cuda_input_is_rejected():
    a, b, h0 = make_inputs(2, 10, 3, torch.float32, "channels")
    with pytest.raises(RuntimeError, match="'b'"):
        torch.ops.seqpar.scan(a, b.cpu(), h0, False)
