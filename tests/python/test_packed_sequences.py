"""Packed variable-length sequences (cu_seqlens, docs/packed_sequences.md) on one device:
every op that takes cu_seqlens against per-sequence runs of the float64 per-step references
(values, per-sequence final states, every gradient), with empty sequences first, in the middle
and last, sequences shorter and longer than a chunk, boundaries on and off chunk edges; plus
opcheck of the ops with cu_seqlens and the errors that name the argument."""
import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

import seqpar
from reference import matrix_state_reference, scan_per_sequence

MODELS = ["gla", "gated_delta", "kda"]
# CUDA cases run where a GPU is (scripts/gpu_session.sh, step pytest-packed).
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# Sequence lengths: empty ones first, in the middle and last; 1 step; shorter and longer than a
# chunk; boundaries on and off chunk edges (chunk 16 below).
LENGTHS = [[0, 5, 0, 65, 1, 79, 0], [200], [16, 16, 32, 3], [0]]


def cu_of(lengths):
    return torch.tensor([0] + list(torch.tensor(lengths).cumsum(0).tolist()), dtype=torch.int64)


def matrix_inputs(model, lengths, H=2, K=8, V=6, dtype=torch.float64, seed=0, h0=True):
    gen = torch.Generator().manual_seed(seed)
    T, N = sum(lengths), len(lengths)
    q = torch.randn(1, T, H, K, generator=gen, dtype=torch.float64)
    k = F.normalize(torch.randn(1, T, H, K, generator=gen, dtype=torch.float64), dim=-1)
    v = torch.randn(1, T, H, V, generator=gen, dtype=torch.float64)
    gshape = (1, T, H) if model == "gated_delta" else (1, T, H, K)
    g = -torch.rand(*gshape, generator=gen, dtype=torch.float64) * 2
    beta = None if model == "gla" else torch.rand(1, T, H, generator=gen, dtype=torch.float64)
    s0 = torch.randn(N, H, K, V, generator=gen, dtype=torch.float64) if h0 else None
    cast = lambda x: None if x is None else x.to(dtype)  # noqa: E731
    return cast(q), cast(k), cast(v), cast(g), cast(beta), s0


def run_matrix(model, q, k, v, g, beta, s0, cu, **kw):
    if model == "gla":
        return seqpar.chunk_gla(q, k, v, g, initial_state=s0, output_final_state=True,
                                cu_seqlens=cu, **kw)
    if model == "kda":
        return seqpar.chunk_kda(q, k, v, g, beta, initial_state=s0, output_final_state=True,
                                cu_seqlens=cu, **kw)
    return seqpar.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=s0,
                                         output_final_state=True, cu_seqlens=cu, **kw)


def matrix_per_sequence(q, k, v, g, beta, s0, cu, scale=None):
    """The float64 per-step reference run on each sequence alone."""
    H, K, V = q.shape[2], q.shape[3], v.shape[3]
    outs = [torch.zeros(1, 0, H, V, dtype=torch.float64)]
    finals = [torch.zeros(0, H, K, V, dtype=torch.float64)]
    for i in range(len(cu) - 1):
        a, b = int(cu[i]), int(cu[i + 1])
        sl = lambda x: None if x is None else x[:, a:b]  # noqa: E731
        o, f = matrix_state_reference(sl(q), sl(k), sl(v), sl(g), sl(beta), scale,
                                      None if s0 is None else s0[i:i + 1])
        outs.append(o)
        finals.append(f)
    return torch.cat(outs, 1), torch.cat(finals, 0)


def close(x, ref, tol):
    x = x.detach().cpu().double()
    return (x - ref).abs().max().item() <= tol * max(1.0, ref.abs().max().item()) if ref.numel() else True


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("lengths", LENGTHS, ids=str)
@pytest.mark.parametrize("chunk", [16, 64])
@pytest.mark.parametrize("h0", [True, False])
def test_matrix_state_values_and_gradients(device, model, lengths, chunk, h0):
    q, k, v, g, beta, s0 = matrix_inputs(model, lengths, h0=h0)
    cu = cu_of(lengths)
    leaves = [x.to(device).requires_grad_() for x in (q, k, v, g, beta, s0) if x is not None]
    it = iter(leaves)
    xs = [next(it) if x is not None else None for x in (q, k, v, g, beta, s0)]
    o, f = run_matrix(model, *xs, cu, chunk_size=chunk)
    assert f.shape == (len(lengths), q.shape[2], q.shape[3], v.shape[3])
    refs = [x.detach().cpu().clone().requires_grad_() for x in leaves]
    it = iter(refs)
    rxs = [next(it) if x is not None else None for x in (q, k, v, g, beta, s0)]
    ro, rf = matrix_per_sequence(*rxs, cu)
    assert close(o, ro, 1e-12) and close(f, rf, 1e-12)
    go, gf = torch.randn_like(ro), torch.randn_like(rf)
    if not any(x.requires_grad for x in (ro, rf)):
        return
    got = torch.autograd.grad((o * go.to(o.device)).sum() + (f * gf.to(f.device)).sum(), leaves,
                              allow_unused=True)
    want = torch.autograd.grad((ro * go).sum() + (rf * gf).sum(), refs, allow_unused=True)
    for x, y in zip(got, want):
        if y is None:
            assert x is None or x.numel() == 0 or x.abs().max() == 0
        else:
            assert close(x, y, 1e-11)


@pytest.mark.parametrize("model", MODELS)
def test_matrix_state_float32_long_packed(model):
    """float32, 1000 steps in 37 sequences of random lengths (some empty), chunk 64."""
    gen = torch.Generator().manual_seed(3)
    lengths = torch.randint(0, 60, (37,), generator=gen).tolist()
    q, k, v, g, beta, s0 = matrix_inputs(model, lengths, H=2, K=16, V=8, seed=3)
    cu = cu_of(lengths)
    o, f = run_matrix(model, *(None if x is None else x.float() for x in (q, k, v, g, beta)),
                      s0.float(), cu)
    ro, rf = matrix_per_sequence(q, k, v, g, beta, s0, cu)
    assert close(o, ro, 2e-5) and close(f, rf, 2e-5)


@pytest.mark.parametrize("model", MODELS)
def test_matrix_state_gradcheck_packed(model):
    q, k, v, g, beta, s0 = matrix_inputs(model, [3, 0, 9, 5], H=1, K=3, V=2)
    cu = cu_of([3, 0, 9, 5])
    xs = [x.requires_grad_() for x in (q, k, v, g, beta, s0) if x is not None]

    def fn(*xs):
        it = iter(xs)
        args = [next(it) if x is not None else None for x in (q, k, v, g, beta, s0)]
        return run_matrix(model, *args, cu, chunk_size=4)
    assert gradcheck(fn, xs)


@pytest.mark.parametrize("model", MODELS)
def test_matrix_state_opcheck_packed(model):
    q, k, v, g, beta, s0 = matrix_inputs(model, [7, 0, 20, 13], dtype=torch.float32)
    s0 = s0.float().requires_grad_()
    cu = cu_of([7, 0, 20, 13])
    if model == "gla":
        torch.library.opcheck(torch.ops.seqpar.chunk_gla.default, (q, k, v, g, None, s0, 16, cu))
    else:
        op = torch.ops.seqpar.chunk_kda if model == "kda" else torch.ops.seqpar.chunk_gated_delta_rule
        torch.library.opcheck(op.default, (q, k, v, g, beta, 0.5, s0, 16, cu))
    torch.library.opcheck(torch.ops.seqpar.matrix_chunk_forward.default,
                          (model, q, k, v, g, beta, 0.5, s0.detach(), 16, cu))


def test_matrix_state_fla_arguments():
    """FLA's cu_seqlens_cpu is read like cu_seqlens; grouped value heads pack too."""
    q, k, v, g, beta, s0 = matrix_inputs("gated_delta", [5, 11], H=2)
    cu = cu_of([5, 11])
    o1, f1 = seqpar.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=s0,
                                           output_final_state=True, cu_seqlens=cu)
    o2, f2 = seqpar.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=s0,
                                           output_final_state=True, cu_seqlens=cu,
                                           cu_seqlens_cpu=cu.clone(), chunk_indices=object())
    assert torch.equal(o1, o2) and torch.equal(f1, f2)
    with pytest.raises(ValueError, match="'cu_seqlens' and 'cu_seqlens_cpu'"):
        seqpar.chunk_gated_delta_rule(q, k, v, g, beta, cu_seqlens=cu,
                                      cu_seqlens_cpu=cu_of([6, 10]))
    # Grouped value heads: 4 value heads over 2 q/k heads.
    v4 = torch.cat([v, v.flip(-1)], 2)
    g4, b4 = torch.cat([g, g], 2), torch.cat([beta, beta.flip(1)], 2)
    o, f = seqpar.chunk_gated_delta_rule(q, k, v4, g4, b4, output_final_state=True, cu_seqlens=cu)
    qr, kr = q.repeat_interleave(2, 2), k.repeat_interleave(2, 2)
    ro, rf = matrix_per_sequence(qr, kr, v4, g4, b4, None, cu)
    assert close(o, ro, 1e-12) and close(f, rf, 1e-12)


def packed_errors(call, T):
    """The cu_seqlens errors every op must raise, naming the argument."""
    bad = [
        (torch.tensor([0, T], dtype=torch.int32), "'cu_seqlens' must be an int64"),
        (torch.tensor([[0, T]]), "'cu_seqlens' must be 1-d"),
        (torch.tensor([1, T]), "'cu_seqlens' must start at 0"),
        (torch.tensor([0, T, T - 1, T]), "'cu_seqlens' must be non-decreasing"),
        (torch.tensor([0, T - 1]), "'cu_seqlens' must end at the packed length"),
    ]
    for cu, message in bad:
        with pytest.raises(RuntimeError, match=message):
            call(cu)


@pytest.mark.parametrize("model", MODELS)
def test_matrix_state_errors_name_the_argument(model):
    q, k, v, g, beta, s0 = matrix_inputs(model, [4, 6])
    packed_errors(lambda cu: run_matrix(model, q, k, v, g, beta, None, cu), 10)
    with pytest.raises(RuntimeError, match="'initial_state' must have shape \\(sequences"):
        run_matrix(model, q, k, v, g, beta, s0[:1], cu_of([4, 6]))
    two = lambda x: None if x is None else torch.cat([x, x], 0)  # noqa: E731
    with pytest.raises(RuntimeError, match="batch size must be 1"):
        run_matrix(model, two(q), two(k), two(v), two(g), two(beta), None, cu_of([4, 6]))


# --- previous_steps and causal_conv1d ---------------------------------------------------------

def conv_per_sequence(x, weight, bias, init, cu, silu):
    """Each sequence alone: y[t] = bias + sum_j weight[:, j] [init_n, x_n][t + j], float64."""
    W = weight.shape[1]
    ys, lasts = [], []
    for i in range(len(cu) - 1):
        a, b = int(cu[i]), int(cu[i + 1])
        before = init[i].double() if init is not None else torch.zeros(W - 1, x.shape[2],
                                                                        dtype=torch.float64)
        window = torch.cat([before, x[0, a:b].double()], 0)
        y = torch.stack([sum(weight[:, j].double() * window[t + j] for j in range(W))
                         + (0 if bias is None else bias.double()) for t in range(b - a)]) \
            if b > a else torch.zeros(0, x.shape[2], dtype=torch.float64)
        ys.append(F.silu(y) if silu else y)
        lasts.append(window[window.shape[0] - (W - 1):])
    return torch.cat(ys, 0).unsqueeze(0), torch.stack(lasts, 0)


@pytest.mark.parametrize("lengths", LENGTHS + [[2, 1, 0, 3]], ids=str)
@pytest.mark.parametrize("W", [1, 2, 4])
@pytest.mark.parametrize("with_init", [True, False])
def test_causal_conv1d_packed(lengths, W, with_init):
    gen = torch.Generator().manual_seed(1)
    T, N, D = sum(lengths), len(lengths), 5
    x = torch.randn(1, T, D, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(D, W, generator=gen, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(D, generator=gen, dtype=torch.float64, requires_grad=True)
    init = (torch.randn(N, W - 1, D, generator=gen, dtype=torch.float64, requires_grad=True)
            if with_init else None)
    cu = cu_of(lengths)
    y, last = seqpar.causal_conv1d(x, w, bias, "silu", init, output_final_state=True,
                                   cu_seqlens=cu)
    ry, rlast = conv_per_sequence(x, w, bias, init, cu, silu=True)
    assert y.shape == (1, T, D) and last.shape == (N, W - 1, D)
    assert close(y, ry, 1e-12) and close(last, rlast, 0)
    leaves = [t for t in (x, w, bias, init) if t is not None]
    gy, gl = torch.randn_like(ry), torch.randn_like(rlast)
    got = torch.autograd.grad((y * gy).sum() + (last * gl).sum(), leaves, allow_unused=True)
    want = torch.autograd.grad((ry * gy).sum() + (rlast * gl).sum(), leaves, allow_unused=True)
    for a, b in zip(got, want):
        if a is None or b is None:
            assert all(t is None or t.numel() == 0 or t.abs().max() == 0 for t in (a, b))
        else:
            assert close(a, b, 1e-12)


def test_previous_steps_packed_and_opcheck():
    cu = cu_of([3, 0, 1, 7])
    x = torch.randn(1, 11, 4, dtype=torch.float64)
    init = torch.randn(4, 2, 4, dtype=torch.float64)
    before, last = seqpar.previous_steps(x, 2, init, cu_seqlens=cu)
    assert torch.equal(before, init)
    for i in range(4):
        a, b = int(cu[i]), int(cu[i + 1])
        assert torch.equal(last[i], torch.cat([init[i], x[0, a:b]], 0)[-2:])
    torch.library.opcheck(torch.ops.seqpar.previous_steps.default, (x, 2, init, cu))
    w = torch.randn(4, 3, dtype=torch.float64)
    torch.library.opcheck(torch.ops.seqpar.causal_conv1d.default, (x, init, w, None, True, cu))


def test_conv_errors_name_the_argument():
    x = torch.randn(1, 10, 3)
    w = torch.randn(3, 3)
    packed_errors(lambda cu: seqpar.causal_conv1d(x, w, cu_seqlens=cu), 10)
    packed_errors(lambda cu: seqpar.previous_steps(x, 2, cu_seqlens=cu), 10)
    with pytest.raises(RuntimeError, match="'initial' must be \\(sequences of 'cu_seqlens'"):
        seqpar.previous_steps(x, 2, torch.zeros(1, 2, 3), cu_seqlens=cu_of([4, 6]))
    with pytest.raises(RuntimeError, match="batch size must be 1"):
        seqpar.causal_conv1d(torch.randn(2, 10, 3), w, cu_seqlens=cu_of([4, 6]))


# --- scan --------------------------------------------------------------------------------------

def check_scan_packed(device, lengths, reverse, dtype, channels, checkpoint_every=0, with_h0=True):
    """seqpar.scan with cu_seqlens (and checkpoint_every) against scan_per_sequence: h, the
    final states and the gradients of a, b and h0."""
    gen = torch.Generator().manual_seed(11)
    T, N = sum(lengths), len(lengths)
    real = torch.float64 if dtype == torch.complex64 else dtype
    a = (0.5 + 0.5 * torch.rand((1, T) + channels, generator=gen, dtype=torch.float64)).to(real)
    b = torch.randn((1, T) + channels, generator=gen, dtype=torch.float64).to(real)
    h0 = torch.randn((N,) + channels, generator=gen, dtype=torch.float64).to(real)
    if dtype == torch.complex64:
        a, b, h0 = (torch.complex(x, 0.3 * x.flip(-1)).to(dtype) for x in (a * 0.9, b, h0))
    cu = cu_of(lengths)
    leaves = [x.to(device).requires_grad_() for x in ((a, b, h0) if with_h0 else (a, b))]
    h, last = seqpar.scan(*leaves[:2], leaves[2] if with_h0 else None, reverse=reverse,
                          checkpoint_every=checkpoint_every, cu_seqlens=cu)
    assert last.shape == (N,) + channels
    ref_leaves = [x.detach().cpu().to(torch.complex128 if x.is_complex() else torch.float64)
                  .requires_grad_() for x in leaves]
    rh, rlast = scan_per_sequence(*ref_leaves[:2], ref_leaves[2] if with_h0 else None, cu, reverse)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    assert close_c(h, rh, tol) and close_c(last, rlast, tol)
    if not (rh.requires_grad or rlast.requires_grad):  # no steps and no h0: nothing to differentiate
        return
    gh, gl = torch.randn_like(rh), torch.randn_like(rlast)
    got = torch.autograd.grad((h * gh.to(h.device, h.dtype)).real.sum() +
                              (last * gl.to(h.device, h.dtype)).real.sum(), leaves,
                              allow_unused=True)
    want = torch.autograd.grad((rh * gh).real.sum() + (rlast * gl).real.sum(), ref_leaves,
                               allow_unused=True)
    for x, y, leaf in zip(got, want, ref_leaves):
        zero = torch.zeros_like(leaf)
        assert close_c(zero if x is None else x, zero if y is None else y, tol * 10)


@pytest.mark.parametrize("lengths", LENGTHS + [[300, 1, 0, 200, 400]], ids=lambda l: str(l)[:30])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.complex64])
@pytest.mark.parametrize("channels", [(1,), (3, 5), (64,)])
@pytest.mark.parametrize("device", DEVICES)
def test_scan_packed_values_and_gradients(device, lengths, reverse, dtype, channels):
    check_scan_packed(device, lengths, reverse, dtype, channels)


# checkpoint_every = c: chunks of c steps of the pack, cut across sequences; c = 1, chunk
# edges on and off the boundaries, a sequence spanning several chunks, c past the length.
@pytest.mark.parametrize("lengths", LENGTHS + [[7, 0, 0, 9, 1, 30, 0]], ids=lambda l: str(l)[:30])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("every", [1, 4, 5, 16, 1000])
@pytest.mark.parametrize("with_h0", [True, False])
@pytest.mark.parametrize("device", DEVICES)
def test_scan_packed_checkpointed(device, lengths, reverse, every, with_h0):
    check_scan_packed(device, lengths, reverse, torch.float64, (3,), every, with_h0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
def test_scan_packed_checkpointed_dtypes(dtype):
    check_scan_packed("cpu", [0, 50, 3, 0, 77], True, dtype, (2, 3), 8)
    check_scan_packed("cpu", [0, 50, 3, 0, 77], False, dtype, (2, 3), 8)

def close_c(x, ref, tol):
    x = x.detach().cpu().to(ref.dtype)
    return (x - ref).abs().max().item() <= tol * max(1.0, ref.abs().max().item()) if ref.numel() else True


def test_scan_packed_opcheck_and_errors():
    cu = cu_of([3, 0, 5, 2])
    a, b = torch.rand(1, 10, 4, dtype=torch.float64), torch.randn(1, 10, 4, dtype=torch.float64)
    h0 = torch.randn(4, 4, dtype=torch.float64)
    torch.library.opcheck(torch.ops.seqpar.scan.default, (a, b, h0, False, cu))
    torch.library.opcheck(torch.ops.seqpar.scan.default, (a, b, None, True, cu))
    packed_errors(lambda c: seqpar.scan(a, b, cu_seqlens=c), 10)
    with pytest.raises(RuntimeError, match="'h0' must have shape \\(sequences of 'cu_seqlens'"):
        seqpar.scan(a, b, h0[:3], cu_seqlens=cu)
    with pytest.raises(RuntimeError, match="batch size must be 1"):
        seqpar.scan(a.expand(2, -1, -1), b.expand(2, -1, -1), cu_seqlens=cu)
    torch.library.opcheck(torch.ops.seqpar.scan_checkpointed.default, (a, b, h0, True, 3, cu))
    packed_errors(lambda c: seqpar.scan(a, b, checkpoint_every=4, cu_seqlens=c), 10)
