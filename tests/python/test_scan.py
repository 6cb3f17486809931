"""Tests of torch.ops.seqpar.scan on the CPU against independent fp64 references.

Tolerances follow docs/design.md rule 8: the kernel's max error against the fp64 sequential
reference must be at most FACTOR times the error of a naive same-precision PyTorch loop on the
same inputs, plus a floor of a few ulps of the output dtype times the output's magnitude (the
kernel rounds its fp32 accumulator to the output dtype once, so for bfloat16 and float16 its
error is that rounding, and for float32 it can legitimately equal the naive loop's).
"""
import math

import numpy as np
import pytest
import torch

from reference import log_space_scan, max_err, mean_err, naive_same_precision, scan_reference

FACTOR = 4.0
ULPS = {torch.float32: 2**-23, torch.float64: 2**-52, torch.bfloat16: 2**-8,
        torch.float16: 2**-11, torch.complex64: 2**-23}
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.complex64]


def make_inputs(shape, dtype, gen, a_low=0.5, a_high=1.0, with_h0=True):
    real = torch.float64
    a = torch.rand(shape, generator=gen, dtype=real) * (a_high - a_low) + a_low
    b = torch.randn(shape, generator=gen, dtype=real)
    h0 = torch.randn((shape[0],) + tuple(shape[2:]), generator=gen, dtype=real) if with_h0 else None
    if dtype.is_complex:
        phase = torch.rand(shape, generator=gen, dtype=real) * 2 * math.pi
        a = torch.polar(a, phase)
        b = torch.complex(b, torch.randn(shape, generator=gen, dtype=real))
        if h0 is not None:
            h0 = torch.complex(h0, torch.randn(h0.shape, generator=gen, dtype=real))
    cast = lambda x: None if x is None else x.to(dtype)  # noqa: E731
    return cast(a), cast(b), cast(h0)


def assert_close_to_reference(h, h_last, a, b, h0, reverse, label=""):
    ref, ref_last = scan_reference(a, b, h0, reverse)
    naive, naive_last = naive_same_precision(a, b, h0, reverse)
    scale = max(ref.abs().max().item() if ref.numel() else 0.0, 1.0)
    floor = 4 * ULPS[a.dtype] * scale
    for got, base, r, what in ((h, naive, ref, "h"), (h_last, naive_last, ref_last, "h_last")):
        err, base_err = max_err(got, r), max_err(base, r)
        print(f"{label} {what}: max {err:.3e} mean {mean_err(got, r):.3e} naive {base_err:.3e}")
        assert err <= FACTOR * base_err + floor, (
            f"{label} {what}: kernel error {err:.3e} > {FACTOR} x naive {base_err:.3e} + {floor:.3e}")


SHAPES = [(1, 1, 1), (2, 1, 3), (3, 37, 5), (1, 1000, 1), (2, 513, 17), (1, 300, 64),
          (2, 65, 129), (2, 9, 3, 4, 5), (4, 257, 2), (1, 2049, 3)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("reverse", [False, True])
def test_forward_matches_reference(shape, dtype, reverse):
    gen = torch.Generator().manual_seed(hash((shape, str(dtype), reverse)) % 2**31)
    a, b, h0 = make_inputs(shape, dtype, gen, with_h0=shape[1] % 2 == 1)
    h, h_last = torch.ops.seqpar.scan(a, b, h0, reverse)
    assert h.shape == a.shape and h.dtype == dtype
    assert h_last.shape == (shape[0],) + tuple(shape[2:])
    assert_close_to_reference(h, h_last, a, b, h0, reverse, f"{shape} {dtype} rev={reverse}")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("layout", ["channels_last", "time_contiguous", "strided"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64, torch.bfloat16, torch.float16],
                         ids=str)
def test_layouts_and_thread_counts(layout, threads, dtype):
    """Non-contiguous views give correct results on every code path (untiled, tiled)."""
    gen = torch.Generator().manual_seed(7)
    B, T, D = 2, 3001, 24
    if layout == "channels_last":
        a_full, b_full, _ = make_inputs((B, T, D + 3), dtype, gen)
        a, b = a_full[:, :, 2:D + 2], b_full[:, :, 1:D + 1]
    elif layout == "time_contiguous":
        a_t, b_t, _ = make_inputs((B, D, T), dtype, gen)
        a, b = a_t.transpose(1, 2), b_t.transpose(1, 2)
        assert a.stride(1) == 1
    else:
        a_s, b_s, _ = make_inputs((B, 2 * T, D, 2), dtype, gen)
        a, b = a_s[:, ::2, :, 1], b_s[:, 1::2, :, 0]
    h0 = make_inputs((B, 1, D), dtype, gen)[1][:, 0]
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for reverse in (False, True):
            h, h_last = torch.ops.seqpar.scan(a, b, h0, reverse)
            assert_close_to_reference(h, h_last, a, b, h0, reverse, f"{layout} t={threads}")
    finally:
        torch.set_num_threads(old)


def python_float_scan(a_list, b_list, h=0.0):
    """fp64 (or complex128) sequential reference on Python scalars: fast enough for T = 1e6."""
    out = []
    for x, y in zip(a_list, b_list):
        h = x * h + y
        out.append(h)
    return out


def numpy_same_precision_scan(a, b, np_dtype):
    h = np_dtype(0)
    out = np.empty(len(a), dtype=np_dtype)
    for i, (x, y) in enumerate(zip(a.astype(np_dtype), b.astype(np_dtype))):
        h = x * h + y
        out[i] = h
    return out


@pytest.mark.parametrize("threads", [1, 2])
def test_long_sequence_a_near_one(threads):
    """T >= 1e6 with a in (0.99, 1): the regime where rounding accumulates the most."""
    T = 1_000_003
    gen = torch.Generator().manual_seed(11)
    a = (torch.rand(1, T, 1, generator=gen, dtype=torch.float64) * 0.01 + 0.99).float()
    b = torch.randn(1, T, 1, generator=gen, dtype=torch.float64).float()
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        h, h_last = torch.ops.seqpar.scan(a, b)
    finally:
        torch.set_num_threads(old)
    a_np, b_np = a.double().flatten().numpy(), b.double().flatten().numpy()
    ref = np.array(python_float_scan(a_np.tolist(), b_np.tolist()))
    err = np.abs(h.double().flatten().numpy() - ref).max()
    # Naive float32 loop on a prefix (a Python loop over 1e6 numpy scalars is too slow for CI);
    # its error grows with T, so the prefix error bounds the full one from below.
    n = 100_000
    naive = numpy_same_precision_scan(a_np[:n], b_np[:n], np.float32)
    naive_err = np.abs(naive.astype(np.float64) - ref[:n]).max()
    scale = np.abs(ref).max()
    print(f"T={T} threads={threads}: max err {err:.3e} (|h| <= {scale:.1f}); "
          f"naive fp32 on first {n}: {naive_err:.3e}")
    assert err <= FACTOR * naive_err + 4 * 2**-23 * scale
    assert abs(h_last.item() - ref[-1]) <= FACTOR * naive_err + 4 * 2**-23 * scale


def test_a_near_zero():
    gen = torch.Generator().manual_seed(3)
    a, b, h0 = make_inputs((3, 4097, 7), torch.float32, gen, a_low=0.0, a_high=1e-3)
    h, h_last = torch.ops.seqpar.scan(a, b, h0)
    assert_close_to_reference(h, h_last, a, b, h0, False, "a~0")


def test_unit_modulus_complex_rotations():
    """|a| = 1: nothing decays, so every rounding error persists; compare with the naive loop."""
    T = 200_001
    gen = torch.Generator().manual_seed(5)
    theta = torch.rand(1, T, 2, generator=gen, dtype=torch.float64) * 2 * math.pi
    a = torch.polar(torch.ones_like(theta), theta).to(torch.complex64)
    b = torch.complex(torch.randn(1, T, 2, generator=gen, dtype=torch.float64),
                      torch.randn(1, T, 2, generator=gen, dtype=torch.float64)).to(torch.complex64)
    h, h_last = torch.ops.seqpar.scan(a, b)
    errs, naive_errs = [], []
    for c in range(2):
        a_l = a[0, :, c].to(torch.complex128).tolist()
        b_l = b[0, :, c].to(torch.complex128).tolist()
        ref = np.array(python_float_scan(a_l, b_l, 0j))
        errs.append(np.abs(h[0, :, c].to(torch.complex128).numpy() - ref).max())
        n = 50_000
        naive = numpy_same_precision_scan(np.array(a_l[:n]), np.array(b_l[:n]), np.complex64)
        naive_errs.append(np.abs(naive.astype(np.complex128) - ref[:n]).max())
        scale = np.abs(ref).max()
    print(f"|a|=1 complex: max err {max(errs):.3e}, naive complex64 prefix {max(naive_errs):.3e}")
    # With |a| = 1 nothing decays, so rounding errors add up like a random walk: the naive
    # loop's error measured on the first 50k steps is scaled by sqrt(T / 50k) to the full T.
    assert max(errs) <= FACTOR * max(naive_errs) * math.sqrt(T / 50_000) + 4 * 2**-23 * scale


@pytest.mark.parametrize("with_h0", [False, True])
def test_zero_length_time(with_h0):
    a = torch.rand(2, 0, 3)
    b = torch.rand(2, 0, 3)
    h0 = torch.randn(2, 3) if with_h0 else None
    h, h_last = torch.ops.seqpar.scan(a, b, h0)
    assert h.shape == (2, 0, 3)
    torch.testing.assert_close(h_last, h0 if with_h0 else torch.zeros(2, 3), rtol=0, atol=0)


def test_empty_batch_and_channels():
    for shape in [(0, 5, 3), (2, 5, 0), (2, 5, 3, 0)]:
        a = torch.rand(shape)
        h, h_last = torch.ops.seqpar.scan(a, a.clone())
        assert h.shape == a.shape and h_last.numel() == 0


def test_matches_log_space_closed_form():
    gen = torch.Generator().manual_seed(9)
    a, b, h0 = make_inputs((2, 500, 6), torch.float64, gen, a_low=0.9, a_high=1.0)
    h, _ = torch.ops.seqpar.scan(a, b, h0)
    torch.testing.assert_close(h, log_space_scan(a, b, h0), rtol=1e-10, atol=1e-10)


def test_output_layout_follows_input():
    a = torch.rand(2, 6, 100).transpose(1, 2)  # (2, 100, 6) time-contiguous
    h, _ = torch.ops.seqpar.scan(a, a.clone())
    assert h.stride() == a.stride()


def test_summary_matches_reference():
    gen = torch.Generator().manual_seed(1)
    for reverse in (False, True):
        for shape in [(2, 777, 5), (1, 100_000, 1), (1, 40_000, 33)]:
            a, b, _ = make_inputs(shape, torch.float64, gen, a_low=0.9)
            A, B = torch.ops.seqpar.scan_summary(a, b, reverse)
            _, ref_last = scan_reference(a, b, None, reverse)
            torch.testing.assert_close(B, ref_last, rtol=1e-9, atol=1e-12)
            torch.testing.assert_close(A, a.prod(dim=1), rtol=1e-9, atol=1e-300)


def test_cpp_and_python_entry_points_agree():
    import seqpar
    a, b = torch.rand(2, 50, 3), torch.randn(2, 50, 3)
    h1, l1 = seqpar.scan(a, b)
    h2, l2 = torch.ops.seqpar.scan(a, b)
    h3, l3 = seqpar.scan(a, b, checkpoint_every=7)
    assert torch.equal(h1, h2) and torch.equal(l1, l2)
    assert torch.equal(h1, h3) and torch.equal(l1, l3)


def test_deterministic_switch_gives_bitwise_repeats_on_cpu():
    """torch.use_deterministic_algorithms(True) selects the chained tiles of the CPU engine:
    with several threads on a tiled shape, repeated forward and backward calls are bitwise
    identical, and agree with the default mode up to rounding."""
    g = torch.Generator().manual_seed(11)
    a = (0.5 + 0.5 * torch.rand(1, 200003, 1, generator=g)).requires_grad_()
    b = torch.randn(1, 200003, 1, generator=g).requires_grad_()
    threads = torch.get_num_threads()
    torch.set_num_threads(max(2, threads))
    was = torch.are_deterministic_algorithms_enabled()
    try:
        default = torch.ops.seqpar.scan(a, b, None, False)[0]
        torch.use_deterministic_algorithms(True)
        runs = []
        for _ in range(6):
            h, h_last = torch.ops.seqpar.scan(a, b, None, False)
            ga, gb = torch.autograd.grad(h.sum() + h_last.sum(), (a, b))
            runs.append((h, ga, gb))
        for h, ga, gb in runs[1:]:
            assert torch.equal(h, runs[0][0]) and torch.equal(ga, runs[0][1])
            assert torch.equal(gb, runs[0][2])
        assert torch.allclose(runs[0][0], default, rtol=1e-5, atol=1e-5)
    finally:
        torch.use_deterministic_algorithms(was)
        torch.set_num_threads(threads)


def _run_with_capability(value, code):
    import os
    import subprocess
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, SEQPAR_CPU_CAPABILITY=value,
               PYTHONPATH=os.path.join(os.path.dirname(os.path.dirname(here)), "python"))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)


def test_cpu_capability_is_reported_and_capped():
    """The CPU engine's target is chosen at run time; SEQPAR_CPU_CAPABILITY caps it, and every
    target gives the same results up to rounding."""
    import seqpar
    best = seqpar.cpu_capability()
    assert best in ("scalar", "avx2", "avx512", "native")
    code = ("import torch, seqpar; g = torch.Generator().manual_seed(3); "
            "a = 0.5 + 0.5 * torch.rand(2, 5000, 3, generator=g); b = torch.randn(2, 5000, 3, generator=g); "
            "h = seqpar.scan(a, b)[0]; print(seqpar.cpu_capability()); torch.save(h, '{}')")
    import tempfile, os
    with tempfile.TemporaryDirectory() as d:
        outs = {}
        for cap in ("scalar", "avx512"):
            path = os.path.join(d, cap + ".pt")
            r = _run_with_capability(cap, code.format(path))
            assert r.returncode == 0, r.stderr
            outs[cap] = (r.stdout.strip(), torch.load(path))
        assert outs["scalar"][0] in ("scalar", "native")
        assert outs["avx512"][0] == best  # a cap at or above the CPU runs the best target
        assert torch.allclose(outs["scalar"][1], outs["avx512"][1], rtol=1e-5, atol=1e-5)


def test_unknown_cpu_capability_is_an_error_naming_the_variable():
    r = _run_with_capability("avx9000", "import torch, seqpar; seqpar.scan(torch.rand(1, 4, 2), torch.rand(1, 4, 2))")
    assert r.returncode != 0
    assert "SEQPAR_CPU_CAPABILITY='avx9000'" in r.stderr and "scalar" in r.stderr


@pytest.mark.parametrize("layout", ["channels", "time"])
def test_large_outputs_start_on_2mib_and_match_reference(layout):
    """CPU outputs of 8 MiB or more are allocated by hand on a 2 MiB boundary
    (src/ops/kernel_params.cpp); they keep the inputs' layout, and the values and gradients
    written into them match the fp64 reference."""
    gen = torch.Generator().manual_seed(11)
    shape = (1, 1024, 2100)  # 8.2 MiB of float32 per tensor
    a, b, h0 = make_inputs(shape, torch.float32, gen)
    if layout == "time":  # time-contiguous: (batch, channels, time) storage
        a, b = (x.transpose(1, 2).contiguous().transpose(1, 2) for x in (a, b))
    h, h_last = torch.ops.seqpar.scan(a, b, h0, False)
    assert h.data_ptr() % (2 << 20) == 0 and h.stride() == a.stride()
    assert_close_to_reference(h, h_last, a, b, h0, False, f"large {layout}")
    g = torch.randn(shape, generator=gen)
    ga, gb, gh0 = torch.ops.seqpar.scan_backward(a, h, h0, g, None, False)
    for t in (ga, gb):
        assert t.data_ptr() % (2 << 20) == 0 and t.stride() == a.stride()
    a64, b64, h064 = (x.double().requires_grad_() for x in (a, b, h0))
    ref, _ = scan_reference(a64, b64, h064)
    ref.backward(g.double())
    for got, want, name in ((ga, a64.grad, "grad_a"), (gb, b64.grad, "grad_b"),
                            (gh0, h064.grad, "grad_h0")):
        # The kernel accumulates in float64 and rounds each gradient to float32 once (measured
        # about 7e-8 of the largest); 16 float32 ulps leave room for that rounding of both
        # factors of grad_a = lam * h, as in the forward's ULPS floor.
        err = ((got.double() - want).abs().max() / want.abs().max()).item()
        assert err < 16 * ULPS[torch.float32], (layout, name, err)
