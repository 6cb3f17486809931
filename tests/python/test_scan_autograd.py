"""Gradients of seqpar.scan: gradcheck in float64, the fused backward against autograd through
an fp64 loop for the other dtypes, the checkpointed variant, and opcheck of the registration."""
import math

import pytest
import torch
from torch.autograd import gradcheck

from reference import max_err


def loop_scan(a, b, h0, reverse):
    h = torch.zeros_like(a[:, 0]) if h0 is None else h0
    outs = [None] * a.shape[1]
    for t in (range(a.shape[1] - 1, -1, -1) if reverse else range(a.shape[1])):
        h = a[:, t] * h + b[:, t]
        outs[t] = h
    return torch.stack(outs, 1), h


def rand_inputs(shape, dtype, seed, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=g, dtype=torch.float64) * 0.5 + 0.5
    b = torch.randn(shape, generator=g, dtype=torch.float64)
    h0 = torch.randn((shape[0],) + tuple(shape[2:]), generator=g, dtype=torch.float64)
    if dtype.is_complex:
        a = torch.polar(a, torch.rand(shape, generator=g, dtype=torch.float64) * 2 * math.pi)
        b = torch.complex(b, torch.randn(shape, generator=g, dtype=torch.float64))
        h0 = torch.complex(h0, torch.randn(h0.shape, generator=g, dtype=torch.float64))
    return [x.to(dtype).requires_grad_(requires_grad) for x in (a, b, h0)]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("shape", [(2, 7, 3), (1, 40, 1), (2, 5, 2, 3),
                                   pytest.param((1, 300, 20), marks=pytest.mark.exhaustive),
                                   (3, 1, 2)],
                         ids=str)
def test_gradcheck_float64(shape, reverse):
    a, b, h0 = rand_inputs(shape, torch.float64, 0)
    assert gradcheck(lambda a, b, h0: torch.ops.seqpar.scan(a, b, h0, reverse), (a, b, h0))
    assert gradcheck(lambda a, b: torch.ops.seqpar.scan(a, b, None, reverse), (a, b))


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("every", [1, 3, 16])
def test_gradcheck_checkpointed(every, reverse):
    a, b, h0 = rand_inputs((2, 17, 3), torch.float64, 1)
    assert gradcheck(
        lambda a, b, h0: torch.ops.seqpar.scan_checkpointed(a, b, h0, reverse, every), (a, b, h0))


def test_gradcheck_time_contiguous_layout():
    a, b, h0 = rand_inputs((2, 4, 30), torch.float64, 2)
    f = lambda a, b, h0: torch.ops.seqpar.scan(a.transpose(1, 2), b.transpose(1, 2), h0[:, :4])  # noqa
    assert gradcheck(f, (a, b, torch.randn(2, 30, dtype=torch.float64, requires_grad=True)))


def test_gradcheck_complex128_through_complex_loop():
    """complex64 is the supported complex dtype; check its gradients against autograd through
    the complex128 loop (PyTorch's conjugate-Wirtinger convention)."""
    shape = (2, 60, 3)
    a, b, h0 = rand_inputs(shape, torch.complex64, 3)
    g = torch.Generator().manual_seed(4)
    w = torch.randn(shape, generator=g, dtype=torch.complex128)
    wl = torch.randn(2, 3, generator=g, dtype=torch.complex128)
    for reverse in (False, True):
        h, hl = torch.ops.seqpar.scan(a, b, h0, reverse)
        loss = (h * w.to(h.dtype)).real.sum() + (hl * wl.to(h.dtype)).imag.sum()
        got = torch.autograd.grad(loss, (a, b, h0))
        wide = [x.detach().to(torch.complex128).requires_grad_() for x in (a, b, h0)]
        H, HL = loop_scan(*wide, reverse)
        ref = torch.autograd.grad((H * w).real.sum() + (HL * wl).imag.sum(), wide)
        for x, r in zip(got, ref):
            assert max_err(x, r) < 1e-5 * max(1.0, r.abs().max().item())


@pytest.mark.parametrize("batch,channels", [(1, 1), (2, 5)])
def test_complex64_time_contiguous(batch, channels):
    """complex64 along time runs the contiguous mode's in-register scan on complex lanes (real
    and imaginary parts in two vectors, vector_scan.h). Outputs and gradients against autograd
    through the complex128 loop, both directions, with a length that leaves a partial vector
    at both ends of the backward's vector loop and the forward's (T = 3001), random phases so
    that a missing conj in the adjoint shows, and |a| near 1 so that a wrong carry between
    vectors would carry far."""
    T = 3001
    g = torch.Generator().manual_seed(9)
    shape = (batch, channels, T)  # made time-contiguous below
    mag = 0.99 + 0.01 * torch.rand(shape, generator=g, dtype=torch.float64)
    a = torch.polar(mag, torch.rand(shape, generator=g, dtype=torch.float64) * 2 * math.pi)
    b = torch.complex(torch.randn(shape, generator=g, dtype=torch.float64),
                      torch.randn(shape, generator=g, dtype=torch.float64))
    h0 = torch.complex(torch.randn(batch, channels, generator=g, dtype=torch.float64),
                       torch.randn(batch, channels, generator=g, dtype=torch.float64))
    a, b = [x.to(torch.complex64).transpose(1, 2).requires_grad_() for x in (a, b)]
    h0 = h0.to(torch.complex64).requires_grad_()
    assert a.stride(1) == 1
    w = torch.randn(batch, T, channels, generator=g, dtype=torch.complex128)
    for reverse in (False, True):
        h, hl = torch.ops.seqpar.scan(a, b, h0, reverse)
        got = torch.autograd.grad((h * w.to(h.dtype)).real.sum() + hl.imag.sum(), (a, b, h0))
        wide = [x.detach().to(torch.complex128).requires_grad_() for x in (a, b, h0)]
        H, HL = loop_scan(*wide, reverse)
        assert max_err(h, H) < 1e-5 * H.abs().max().item()
        ref = torch.autograd.grad((H * w).real.sum() + HL.imag.sum(), wide)
        for x, r in zip(got, ref):
            assert max_err(x, r) < 1e-5 * max(1.0, r.abs().max().item())


@pytest.mark.parametrize("time_contiguous", [False, True])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2),
                                       (torch.float16, 4e-3)], ids=str)
def test_low_precision_gradients(dtype, tol, time_contiguous):
    """Gradients in the input dtype, accumulated in fp32: relative error of the output dtype.
    Both layouts, since time-contiguous tensors take the vectorized in-register path."""
    shape = (2, 257, 19)
    a, b, h0 = rand_inputs(shape, dtype, 5)
    if time_contiguous:
        a, b = [x.detach().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()
                for x in (a, b)]
        assert a.stride(1) == 1
    g = torch.Generator().manual_seed(6)
    w = torch.randn(shape, generator=g, dtype=torch.float64)
    for reverse in (False, True):
        h, hl = torch.ops.seqpar.scan(a, b, h0, reverse)
        got = torch.autograd.grad((h.double() * w).sum() + hl.double().sum(), (a, b, h0))
        wide = [x.detach().double().requires_grad_() for x in (a, b, h0)]
        H, HL = loop_scan(*wide, reverse)
        ref = torch.autograd.grad((H * w).sum() + HL.sum(), wide)
        for x, r in zip(got, ref):
            assert x.dtype == dtype
            rel = max_err(x, r) / r.abs().max().item()
            print(dtype, f"time_contiguous={time_contiguous} reverse={reverse} rel err {rel:.2e}")
            assert rel < tol


def test_backward_with_expanded_gradient():
    """h.sum().backward() hands the op a stride-0 gradient."""
    a, b, h0 = rand_inputs((3, 100, 5), torch.float64, 7)
    h, hl = torch.ops.seqpar.scan(a, b, h0)
    (h.sum() + hl.sum()).backward()
    wide = [x.detach().clone().requires_grad_() for x in (a, b, h0)]
    H, HL = loop_scan(*wide, False)
    (H.sum() + HL.sum()).backward()
    for x, r in zip((a, b, h0), wide):
        torch.testing.assert_close(x.grad, r.grad, rtol=1e-10, atol=1e-10)


def test_only_h_last_used():
    a, b, h0 = rand_inputs((2, 50, 4), torch.float64, 8)
    _, hl = torch.ops.seqpar.scan(a, b, h0)
    ga, gb, gh = torch.autograd.grad(hl.sum(), (a, b, h0))
    wide = [x.detach().clone().requires_grad_() for x in (a, b, h0)]
    _, HL = loop_scan(*wide, False)
    ra, rb, rh = torch.autograd.grad(HL.sum(), wide)
    torch.testing.assert_close((ga, gb, gh), (ra, rb, rh), rtol=1e-10, atol=1e-12)


def test_checkpointed_matches_full_backward_long():
    a, b, h0 = rand_inputs((2, 5000, 8), torch.float32, 9)
    w = torch.randn(2, 5000, 8)
    grads = []
    for every in (0, 1000, 333):
        h, hl = torch.ops.seqpar.scan_checkpointed(a, b, h0, False, every)
        grads.append(torch.autograd.grad((h * w).sum() + hl.sum(), (a, b, h0)))
    for other in grads[1:]:
        for x, r in zip(other, grads[0]):
            torch.testing.assert_close(x, r, rtol=1e-5, atol=1e-5)


def test_zero_length_time_gradients():
    a = torch.rand(2, 0, 3, dtype=torch.float64, requires_grad=True)
    b = torch.rand(2, 0, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    _, hl = torch.ops.seqpar.scan(a, b, h0)
    (g,) = torch.autograd.grad((hl * 3).sum(), (h0,))
    torch.testing.assert_close(g, torch.full((2, 3), 3.0, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex64], ids=str)
def test_opcheck(dtype):
    a, b, h0 = rand_inputs((2, 9, 3), dtype, 10)
    torch.library.opcheck(torch.ops.seqpar.scan.default, (a, b, h0, False))
    torch.library.opcheck(torch.ops.seqpar.scan.default, (a, b, None, True))
    torch.library.opcheck(torch.ops.seqpar.scan_checkpointed.default, (a, b, h0, False, 4))
    x = [t.detach() for t in (a, b)]
    torch.library.opcheck(torch.ops.seqpar.scan_summary.default, (x[0], x[1], False))
    h = torch.ops.seqpar.scan(x[0], x[1])[0]
    torch.library.opcheck(torch.ops.seqpar.scan_backward.default,
                          (x[0], h, None, torch.randn_like(h), None, False))


# One rounding to the storage type is 2^-9 (bfloat16) or 2^-12 (float16) relative, and the
# inputs are rounded too; measured (2026-11-26) at most 4.9e-3 and 5.0e-4 of the largest entry,
# so the tolerances leave 4x and 8x.
@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 2e-2), (torch.float16, 4e-3)], ids=str)
def test_16bit_channel_rows_shared_through_tiles(dtype, tol):
    """One batch row of 40 channels over 60001 steps with 2 threads: the row is shared through
    several look-back time tiles, so the channel lanes' summary and run loops of the 16-bit types
    (float16's through Highway) both run, forward and backward. Reference: the same inputs in
    float64 (the float64 loops, gradchecked above)."""
    shape = (1, 60001, 40)
    a, b, h0 = rand_inputs(shape, dtype, 9)
    g = torch.Generator().manual_seed(10)
    w = torch.randn(shape, generator=g, dtype=torch.float64)
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for reverse in (False, True):
            h, hl = torch.ops.seqpar.scan(a, b, h0, reverse)
            got = torch.autograd.grad((h.double() * w).sum() + hl.double().sum(), (a, b, h0))
            wide = [x.detach().double().requires_grad_() for x in (a, b, h0)]
            H, HL = torch.ops.seqpar.scan(*wide, reverse)
            ref = torch.autograd.grad((H * w).sum() + HL.sum(), wide)
            for x, r in zip((h, hl) + got, (H, HL) + ref):
                rel = max_err(x, r) / r.abs().max().item()
                print(dtype, f"reverse={reverse} rel err {rel:.2e}")
                assert rel < tol
    finally:
        torch.set_num_threads(old)
