"""seqpar.block_scan, the 2x2 block recurrence h_t = A_t h_{t-1} + b_t (docs/block_scan.md),
against a float64 per-step loop written here: values, final states and summaries for every dtype,
reverse, h0, lower_triangular (A[..., 0, 1] never read), strided and time-major layouts, 1 to 4
threads (the engine's channel-inner, time-inner and look-back tile paths), maps near 0 and near 1
(oscillators of radius 0.999); the fused backward against autograd through the loop, gradcheck,
opcheck; the second-order integration against two diagonal scans; the errors."""
import math

import pytest
import torch
from torch.autograd import gradcheck

import seqpar


def loop_block_scan(A, b, h0=None, reverse=False, lower=False):
    """The recurrence step by step in the inputs' dtype (differentiable)."""
    if lower:
        A = A.clone()
        A[..., 0, 1] = 0
    state = torch.zeros_like(b[:, 0]) if h0 is None else h0
    outs = [None] * b.shape[1]
    for t in (range(b.shape[1] - 1, -1, -1) if reverse else range(b.shape[1])):
        state = (A[:, t] @ state.unsqueeze(-1)).squeeze(-1) + b[:, t]
        outs[t] = state
    h = torch.stack(outs, 1) if outs else torch.zeros_like(b)
    return h, state


def make_inputs(shape, regime="mid", seed=0, dtype=torch.float64):
    """A (B, T, *C, 2, 2), b (B, T, *C, 2), h0 (B, *C, 2). Regimes: "mid" (random, spectral radius
    below 1), "near1" (rotations of radius 0.999: oscillators that barely decay), "near0"
    (radius 1e-3), "second_order" (the lower-triangular position/velocity map)."""
    g = torch.Generator().manual_seed(seed)
    B, T, *C = shape
    if regime in ("near1", "near0"):
        r = 0.999 if regime == "near1" else 1e-3
        th = torch.rand(B, T, *C, generator=g, dtype=torch.float64) * 2 * math.pi
        A = torch.stack([torch.stack([th.cos(), -th.sin()], -1),
                         torch.stack([th.sin(), th.cos()], -1)], -2) * r
    elif regime == "second_order":
        a = torch.rand(B, T, *C, generator=g, dtype=torch.float64) * 0.2 + 0.8
        dt = torch.rand(B, T, *C, generator=g, dtype=torch.float64) * 0.1
        A = torch.stack([torch.stack([a, torch.zeros_like(a)], -1),
                         torch.stack([dt * a, torch.ones_like(a)], -1)], -2)
    else:
        A = torch.randn(B, T, *C, 2, 2, generator=g, dtype=torch.float64) * 0.45
    b = torch.randn(B, T, *C, 2, generator=g, dtype=torch.float64)
    h0 = torch.randn(B, *C, 2, generator=g, dtype=torch.float64)
    return A.to(dtype), b.to(dtype), h0.to(dtype)


TOL = {torch.float64: 1e-12, torch.float32: 2e-5, torch.bfloat16: 3e-2, torch.float16: 4e-3}


def rel(x, y):
    return ((x.double() - y.double()).abs().max() / y.double().abs().max().clamp_min(1)).item()


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("nthreads", [1, 2, 4])
@pytest.mark.parametrize("shape", [(2, 1000, 3), (1, 3000, 64), (3, 7, 1), (2, 33, 2, 5),
                                   (1, 20000, 1), (5, 1, 2)], ids=str)
@pytest.mark.parametrize("regime", [pytest.param("mid", marks=pytest.mark.exhaustive), "near1",
                                    "near0"])
def test_forward_matches_loop(threads, nthreads, shape, regime):
    torch.set_num_threads(nthreads)
    A, b, h0 = make_inputs(shape, regime, seed=len(shape) + shape[1])
    for reverse in (False, True):
        for init in (None, h0):
            h, h_last = seqpar.block_scan(A, b, init, reverse)
            rh, rl = loop_block_scan(A, b, init, reverse)
            assert rel(h, rh) < 1e-12 and rel(h_last, rl) < 1e-12, (reverse, init is None)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("shape", [(2, 500, 3), (1, 2000, 32)], ids=str)
def test_low_precision_against_float64(dtype, shape):
    A, b, h0 = make_inputs(shape, "near1", seed=3)
    h, h_last = seqpar.block_scan(A.to(dtype), b.to(dtype), h0.to(dtype))
    assert h.dtype == dtype and h_last.dtype == dtype
    # reference on the rounded inputs: the error is the kernel's, not the inputs' rounding
    rh, rl = loop_block_scan(A.to(dtype).double(), b.to(dtype).double(), h0.to(dtype).double())
    assert rel(h, rh) < TOL[dtype] and rel(h_last, rl) < TOL[dtype]


def test_lower_triangular_ignores_the_upper_corner():
    A, b, h0 = make_inputs((2, 300, 4), "second_order", seed=5)
    garbage = A.clone()
    garbage[..., 0, 1] = float("nan")
    h, h_last = seqpar.block_scan(garbage, b, h0, lower_triangular=True)
    rh, rl = loop_block_scan(A, b, h0)
    assert rel(h, rh) < 1e-12 and rel(h_last, rl) < 1e-12
    Ag = garbage.clone().requires_grad_()
    h, h_last = seqpar.block_scan(Ag, b, h0, lower_triangular=True)
    (h.sum() + h_last.sum()).backward()
    assert (Ag.grad[..., 0, 1] == 0).all() and torch.isfinite(Ag.grad).all()


def test_second_order_equals_two_scans():
    """v_t = a_t v_{t-1} + u_t, x_t = x_{t-1} + dt_t v_t: one lower-triangular block scan, against
    the two-scan-and-cumulative-sum form a GFN layer uses without it."""
    g = torch.Generator().manual_seed(9)
    B, T, C = 2, 4000, 8
    a = torch.rand(B, T, C, generator=g, dtype=torch.float64) * 0.1 + 0.9
    u = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    dt = torch.rand(B, T, C, generator=g, dtype=torch.float64) * 0.05
    v, _ = seqpar.scan(a, u)
    x = torch.cumsum(dt * v, 1)
    zero = torch.zeros_like(a)
    A = torch.stack([torch.stack([a, zero], -1), torch.stack([dt * a, torch.ones_like(a)], -1)], -2)
    h, h_last = seqpar.block_scan(A, torch.stack([u, dt * u], -1), lower_triangular=True)
    assert rel(h[..., 0], v) < 1e-12 and rel(h[..., 1], x) < 1e-11


def test_layouts_and_strides():
    """Time-major inputs, a transposed (non-packed) 2x2 block, a channel slice, an expanded b."""
    A, b, h0 = make_inputs((3, 257, 6), "mid", seed=2)
    ref_h, ref_l = loop_block_scan(A, b, h0)
    At = A.transpose(0, 1).contiguous().transpose(0, 1)  # time-major storage
    bt = b.transpose(0, 1).contiguous().transpose(0, 1)
    h, h_last = seqpar.block_scan(At, bt, h0)
    assert rel(h, ref_h) < 1e-12 and rel(h_last, ref_l) < 1e-12
    assert h.stride(0) < h.stride(1) or h.shape[0] == 1  # the output follows b's time-major layout
    Ak = A.transpose(-1, -2).contiguous().transpose(-1, -2)  # column-major 2x2 blocks
    h, _ = seqpar.block_scan(Ak, b, h0)
    assert rel(h, ref_h) < 1e-12
    wide_A, wide_b, _ = make_inputs((3, 257, 12), "mid", seed=2)
    h, _ = seqpar.block_scan(wide_A[:, :, ::2], wide_b[:, :, ::2])
    assert rel(h, loop_block_scan(wide_A[:, :, ::2], wide_b[:, :, ::2])[0]) < 1e-12
    eb = b[:, :1].expand_as(b)
    assert rel(seqpar.block_scan(A, eb)[0], loop_block_scan(A, eb)[0]) < 1e-12


def test_empty_and_single_step():
    A, b, h0 = make_inputs((2, 0, 3), seed=1)
    h, h_last = seqpar.block_scan(A, b, h0)
    assert h.shape == b.shape and torch.equal(h_last, h0)
    h, h_last = seqpar.block_scan(A, b)
    assert (h_last == 0).all()
    A, b, h0 = make_inputs((0, 5, 3), seed=1)
    assert seqpar.block_scan(A, b, h0)[0].shape == b.shape


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("shape", [(1, 3000, 64), (2, 500, 3), (4, 9, 1)], ids=str)
def test_summary_composes_to_the_last_state(shape, reverse):
    A, b, h0 = make_inputs(shape, "near1", seed=4)
    M, E = seqpar.block_scan_summary(A, b, reverse)
    assert M.shape == h0.shape + (2,) and E.shape == h0.shape
    _, rl = loop_block_scan(A, b, h0, reverse)
    assert rel((M @ h0.unsqueeze(-1)).squeeze(-1) + E, rl) < 1e-12
    M0, E0 = seqpar.block_scan_summary(A[:, :0], b[:, :0])
    assert torch.equal(M0, torch.eye(2, dtype=A.dtype).expand_as(M0)) and (E0 == 0).all()


@pytest.mark.parametrize("nthreads", [pytest.param(1, marks=pytest.mark.exhaustive), 3])
@pytest.mark.parametrize("lower", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("shape", [(2, 700, 3), (1, 3000, 64), (2, 9, 2, 2)], ids=str)
def test_backward_matches_autograd_through_the_loop(threads, nthreads, shape, reverse, lower):
    torch.set_num_threads(nthreads)
    A, b, h0 = make_inputs(shape, "second_order" if lower else "near1", seed=6)
    g = torch.Generator().manual_seed(8)
    wh, wl = torch.randn(b.shape, generator=g, dtype=torch.float64), \
        torch.randn(h0.shape, generator=g, dtype=torch.float64)
    grads = []
    for fn in (lambda *x: seqpar.block_scan(*x, reverse=reverse, lower_triangular=lower),
               lambda *x: loop_block_scan(*x, reverse=reverse, lower=lower)):
        leaves = [x.clone().requires_grad_() for x in (A, b, h0)]
        h, hl = fn(*leaves)
        grads.append(torch.autograd.grad((h * wh).sum() + (hl * wl).sum(), leaves))
    for got, want in zip(*grads):
        assert rel(got, want) < 1e-11


def test_backward_with_only_one_output_used():
    A, b, h0 = make_inputs((2, 100, 3), seed=7)
    for pick in (0, 1):
        leaves = [x.clone().requires_grad_() for x in (A, b, h0)]
        seqpar.block_scan(*leaves)[pick].sum().backward()
        ref = [x.clone().requires_grad_() for x in (A, b, h0)]
        loop_block_scan(*ref)[pick].sum().backward()
        for x, y in zip(leaves, ref):
            assert rel(x.grad, y.grad) < 1e-12


@pytest.mark.parametrize("shape", [(2, 7, 3), (1, 40, 1), (2, 5, 2, 2), (3, 1, 2)], ids=str)
@pytest.mark.parametrize("reverse", [False, True])
def test_gradcheck(shape, reverse):
    A, b, h0 = (x.requires_grad_() for x in make_inputs(shape, "mid", seed=1))
    assert gradcheck(lambda A, b, h0: seqpar.block_scan(A, b, h0, reverse), (A, b, h0))


def test_float32_gradients():
    A, b, h0 = make_inputs((2, 2000, 16), "near1", seed=12)
    leaves = [x.float().requires_grad_() for x in (A, b, h0)]
    h, hl = seqpar.block_scan(*leaves)
    (h.sum() + hl.sum()).backward()
    ref = [x.clone().requires_grad_() for x in (A, b, h0)]
    h, hl = loop_block_scan(*ref)
    (h.sum() + hl.sum()).backward()
    for x, y in zip(leaves, ref):
        assert rel(x.grad, y.grad) < 1e-5


def test_opcheck():
    A, b, h0 = make_inputs((2, 11, 3), seed=3, dtype=torch.float32)
    torch.library.opcheck(torch.ops.seqpar.block_scan.default,
                          (A.requires_grad_(), b.requires_grad_(), h0, False, False))
    torch.library.opcheck(torch.ops.seqpar.block_scan_summary.default, (A.detach(), b.detach()))


def test_errors_name_the_argument():
    A, b, h0 = make_inputs((2, 5, 3), seed=0)
    with pytest.raises(RuntimeError, match="argument 'A' must be"):
        seqpar.block_scan(A[..., 0], b)
    with pytest.raises(RuntimeError, match="argument 'b' must be"):
        seqpar.block_scan(A, b[:, :4])
    with pytest.raises(RuntimeError, match="argument 'b' has dtype"):
        seqpar.block_scan(A, b.float())
    with pytest.raises(RuntimeError, match="argument 'h0' must be"):
        seqpar.block_scan(A, b, h0[:1])
    with pytest.raises(RuntimeError, match="argument 'A' has dtype"):
        seqpar.block_scan(A.to(torch.complex128), b.to(torch.complex128))


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@CUDA
@pytest.mark.parametrize("lower", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("shape", [(2, 1000, 3), (1, 5000, 64), (3, 1, 2), (2, 0, 4),
                                   (64, 4096, 1)], ids=str)
def test_cuda_matches_cpu(shape, reverse, lower):
    """The CUDA kernels through the op (forward, summary and every gradient) against the CPU op,
    float64 and float32 (the GPU session's pytest-block step)."""
    A, b, h0 = make_inputs(shape, "second_order" if lower else "near1", seed=13)
    g = torch.Generator().manual_seed(14)
    wh = torch.randn(b.shape, generator=g, dtype=torch.float64)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 2e-5)):
        out = []
        for dev in ("cpu", "cuda"):
            leaves = [x.to(dev, dtype).requires_grad_() for x in (A, b, h0)]
            h, hl = seqpar.block_scan(*leaves, reverse=reverse, lower_triangular=lower)
            M, E = seqpar.block_scan_summary(leaves[0].detach(), leaves[1].detach(), reverse,
                                             lower)
            ((h * wh.to(dev, dtype)).sum() + hl.sum()).backward()
            out.append([t.detach().cpu() for t in (h, hl, M, E)] +
                       [x.grad.cpu() for x in leaves])
        for got, want in zip(out[1], out[0]):
            if want.numel():
                assert rel(got, want) < tol
