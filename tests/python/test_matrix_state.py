"""seqpar.chunk_gla, seqpar.chunk_gated_delta_rule and seqpar.chunk_kda against the per-step float64 recurrence
(reference.matrix_state_reference): odd lengths and chunk sizes, h0, decays near 0 and 1, beta
near 0 and 1, T up to 2^14 in float32, bfloat16; gradcheck in float64; float32 gradients against
autograd through the reference; opcheck; errors that name the argument."""
import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

import seqpar
from reference import matrix_state_reference

MODELS = ["gla", "gated_delta", "kda"]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def make_inputs(model, B, T, H, K, V, dtype=torch.float64, regime="mid", seed=0, h0=True,
                device="cpu"):
    """q, k, v, g, beta (None for GLA), initial_state (or None). Keys are unit vectors, as
    delta-rule models normalize them (the step is then a contraction for beta in (0, 1])."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.rand(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    q = torch.randn(B, T, H, K, generator=gen, dtype=torch.float64)
    k = F.normalize(torch.randn(B, T, H, K, generator=gen, dtype=torch.float64), dim=-1)
    v = torch.randn(B, T, H, V, generator=gen, dtype=torch.float64)
    gshape = (B, T, H) if model == "gated_delta" else (B, T, H, K)
    # log decays: near 1 (alpha > 1 - 1e-4), near 0 (alpha < e^-10, down to e^-40), or mixed
    g = {"mid": -r(*gshape) * 2, "near1": -r(*gshape) * 1e-4,
         "near0": -10 - r(*gshape) * 30}[regime]
    beta = None
    if model != "gla":
        beta = {"mid": r(B, T, H), "near1": 1 - r(B, T, H) * 1e-3,
                "near0": r(B, T, H) * 1e-3}[regime]
    s0 = torch.randn(B, H, K, V, generator=gen, dtype=torch.float64) if h0 else None
    cast = lambda x: None if x is None else x.to(device=device, dtype=dtype)  # noqa: E731
    return cast(q), cast(k), cast(v), cast(g), cast(beta), (None if s0 is None else s0.to(device))


def run(model, q, k, v, g, beta, s0, **kw):
    if model == "gla":
        return seqpar.chunk_gla(q, k, v, g, initial_state=s0, output_final_state=True, **kw)
    if model == "kda":
        return seqpar.chunk_kda(q, k, v, g, beta, initial_state=s0, output_final_state=True,
                                **kw)
    return seqpar.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=s0,
                                         output_final_state=True, **kw)


def reference(q, k, v, g, beta, s0, scale=None):
    cpu = lambda x: None if x is None else x.detach().cpu()  # noqa: E731
    return matrix_state_reference(cpu(q), cpu(k), cpu(v), cpu(g), cpu(beta), scale, cpu(s0))


def rel_err(x, ref):
    return ((x.detach().cpu().double() - ref).abs().max() / ref.abs().max().clamp_min(1e-300)).item()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("T,chunk", [(1, 64), (17, 16), (64, 64), (100, 32), (257, 64),
                                     (130, 8), (33, 5)], ids=str)
@pytest.mark.parametrize("h0", [True, False])
def test_float64_matches_reference(device, model, T, chunk, h0):
    if model != "gated_delta" and chunk > 16 and chunk % 16:
        pytest.skip("GLA chunks are at most 16 or a multiple of 16")
    q, k, v, g, beta, s0 = make_inputs(model, 2, T, 3, 8, 5, h0=h0, device=device)
    o, S = run(model, q, k, v, g, beta, s0, chunk_size=chunk)
    o_ref, S_ref = reference(q, k, v, g, beta, s0)
    assert o.shape == (2, T, 3, 5) and o.dtype == torch.float64
    assert S.shape == (2, 3, 8, 5) and S.dtype == torch.float64
    assert rel_err(o, o_ref) < 1e-12
    assert rel_err(S, S_ref) < 1e-12


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("regime", ["mid", "near1", "near0"])
@pytest.mark.parametrize("T", [1000, pytest.param(2 ** 14, marks=pytest.mark.exhaustive)])
def test_float32_long_sequences(device, model, regime, T):
    """Float32 within 5e-6 of the float64 recurrence relative to the largest value (measured
    about 1e-6 at T = 2^14 on every regime: the chunk form's error does not grow with T).
    T = 2^14 (its reference loop is slow) runs once, on this CPU's target, not per target."""
    q, k, v, g, beta, s0 = make_inputs(model, 1, T, 2, 16, 16, torch.float32, regime, seed=T,
                                       device=device)
    o, S = run(model, q, k, v, g, beta, s0)
    o_ref, S_ref = reference(q, k, v, g, beta, s0)
    assert o.dtype == torch.float32 and S.dtype == torch.float32
    assert torch.isfinite(o).all() and torch.isfinite(S).all()
    assert rel_err(o, o_ref) < 5e-6
    assert rel_err(S, S_ref) < 5e-6


@pytest.mark.parametrize("model", MODELS)
def test_decay_zero_and_one_exactly(model):
    """alpha = 1 (g = 0) and alpha = e^-80 (g = -80, far below float32's range over a chunk)."""
    for value in (0.0, -80.0):
        q, k, v, g, beta, s0 = make_inputs(model, 1, 150, 2, 8, 4, torch.float32)
        g = torch.full_like(g, value)
        o, S = run(model, q, k, v, g, beta, s0)
        o_ref, S_ref = reference(q, k, v, g, beta, s0)
        assert torch.isfinite(o).all()
        assert rel_err(o, o_ref) < 5e-6 and rel_err(S, S_ref) < 5e-6


@pytest.mark.parametrize("model", MODELS)
def test_bfloat16(model):
    """bfloat16 inputs compute in float32: against the reference on the same bfloat16 values,
    the error is the output's rounding to bfloat16 (2^-9 relative) and little else."""
    q, k, v, g, beta, s0 = make_inputs(model, 2, 300, 2, 16, 8, torch.bfloat16)
    o, S = run(model, q, k, v, g, beta, s0.float())
    assert o.dtype == torch.bfloat16 and S.dtype == torch.float32
    o_ref, S_ref = reference(q, k, v, g, beta, s0)
    assert rel_err(o, o_ref) < 1e-2
    assert rel_err(S, S_ref) < 1e-5


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("T,chunk", [(10, 4), (7, 16), (20, 8), (70, 32), (150, 64)], ids=str)
def test_gradcheck_float64(model, T, chunk):
    """Chunks of 32 and 64 hold several of GLA's 16-step sub-chunks (the blocks between them)."""
    q, k, v, g, beta, s0 = make_inputs(model, 1, T, 2, 3, 2, regime="mid")
    args = [x.requires_grad_() for x in (q, k, v, g, s0)]
    if model == "gla":
        f = lambda q, k, v, g, s0: torch.ops.seqpar.chunk_gla(q, k, v, g, 0.7, s0, chunk)  # noqa
    else:
        args.insert(4, beta.requires_grad_())
        op = getattr(torch.ops.seqpar, "chunk_kda" if model == "kda" else "chunk_gated_delta_rule")
        f = lambda q, k, v, g, b, s0: op(q, k, v, g, b, 0.7, s0, chunk)  # noqa: E731
    assert gradcheck(f, tuple(args))


@pytest.mark.parametrize("model", MODELS)
def test_float32_gradients_match_reference(model):
    """Gradients of o and S_T in float32 against autograd through the float64 per-step loop."""
    q, k, v, g, beta, s0 = make_inputs(model, 1, 200, 2, 8, 8, torch.float32, seed=3)
    inputs = [x for x in (q, k, v, g, beta, s0) if x is not None]
    for x in inputs:
        x.requires_grad_()
    o, S = run(model, q, k, v, g, beta, s0, chunk_size=32)
    gen = torch.Generator().manual_seed(9)
    wo = torch.randn(o.shape, generator=gen)
    wS = torch.randn(S.shape, generator=gen)
    grads = torch.autograd.grad((o * wo).sum() + (S * wS).sum(), inputs)
    leaves = [x.detach().double().requires_grad_() for x in inputs]
    full = dict(zip(["q", "k", "v", "g"] + (["beta"] if beta is not None else []) + ["s0"], leaves))
    o_ref, S_ref = matrix_state_reference(full["q"], full["k"], full["v"], full["g"],
                                          full.get("beta"), None, full["s0"])
    ref_grads = torch.autograd.grad((o_ref * wo.double()).sum() + (S_ref * wS.double()).sum(), leaves)
    # Measured: at most 7.2e-7 relative (gated DeltaNet's g; GLA's at most 3.9e-7), a few float32
    # roundings accumulated over 200 steps; 5e-6 leaves about 7x.
    for name, got, want in zip(full, grads, ref_grads):
        assert rel_err(got, want) < 5e-6, name


@pytest.mark.parametrize("model", MODELS)
def test_opcheck(model):
    q, k, v, g, beta, s0 = make_inputs(model, 1, 40, 2, 4, 3, torch.float32)
    s0.requires_grad_()
    if model == "gla":
        torch.library.opcheck(torch.ops.seqpar.chunk_gla.default, (q, k, v, g, None, s0, 16))
    elif model == "kda":
        torch.library.opcheck(torch.ops.seqpar.chunk_kda.default,
                              (q, k, v, g, beta, 0.5, s0, 16, None))
    else:
        torch.library.opcheck(torch.ops.seqpar.chunk_gated_delta_rule.default,
                              (q, k, v, g, beta, 0.5, s0, 16))


@pytest.mark.parametrize("model", MODELS)
def test_opcheck_fused_chunk_ops(model):
    """The fused CPU kernels' ops (their CPU and Meta kernels): schema, fake tensors, and the
    backward op's gradients against autograd through the float64 reference."""
    q, k, v, g, beta, s0 = make_inputs(model, 1, 40, 2, 4, 3, torch.float64)
    name, b = model, None if model == "gla" else beta
    o, final, states = torch.ops.seqpar.matrix_chunk_forward(name, q, k, v, g, b, 0.5, s0, 16)
    assert states.shape == (1, 2, 3, 4, 3)  # (B, H, chunks, K, V): all that backward keeps
    torch.library.opcheck(torch.ops.seqpar.matrix_chunk_forward.default,
                          (name, q, k, v, g, b, 0.5, s0, 16))
    go, gf = torch.randn_like(o), torch.randn_like(final)
    torch.library.opcheck(torch.ops.seqpar.matrix_chunk_backward.default,
                          (name, q, k, v, g, b, 0.5, states, go, gf, 16))
    grads = torch.ops.seqpar.matrix_chunk_backward(name, q, k, v, g, b, 0.5, states, go, gf, 16)
    xs = [x.clone().requires_grad_() for x in (q, k, v, g) + (() if b is None else (b,)) + (s0,)]
    ref_o, ref_s = matrix_state_reference(*xs[:4], None if b is None else xs[4], 0.5, xs[-1])
    ref = torch.autograd.grad((ref_o * go).sum() + (ref_s * gf).sum(), xs)
    got = list(grads[:4]) + ([] if b is None else [grads[4]]) + [grads[5]]
    for x, y in zip(got, ref):
        assert rel_err(x, y) < 1e-10


def test_conventions():
    """scale defaults to K^-0.5; final_state is None unless asked for; empty T."""
    q, k, v, g, _, s0 = make_inputs("gla", 1, 20, 2, 9, 3)
    o, final = seqpar.chunk_gla(q, k, v, g, initial_state=s0)
    assert final is None
    o_ref, _ = matrix_state_reference(q, k, v, g, None, 9 ** -0.5, s0)
    assert rel_err(o, o_ref) < 1e-12
    o2, _ = seqpar.chunk_gla(q, k, v, g, scale=2.0, initial_state=s0)
    assert rel_err(o2, matrix_state_reference(q, k, v, g, None, 2.0, s0)[0]) < 1e-12
    o, S = seqpar.chunk_gla(q[:, :0], k[:, :0], v[:, :0], g[:, :0], initial_state=s0,
                            output_final_state=True)
    assert o.shape == (1, 0, 2, 3) and torch.equal(S, s0)


def test_errors_name_the_argument():
    q, k, v, g, beta, s0 = make_inputs("gated_delta", 1, 12, 2, 4, 3)
    gla_g = torch.zeros(1, 12, 2, 4, dtype=torch.float64)
    cases = [
        (lambda: seqpar.chunk_gla(q[0], k, v, gla_g), "'q' must be 4-d"),
        (lambda: seqpar.chunk_gla(q, k[:, :5], v, gla_g), "'k' must have the shape of 'q'"),
        (lambda: seqpar.chunk_gla(q, k, v[:, :5], gla_g), "'v' must be (batch, time, heads, V)"),
        (lambda: seqpar.chunk_gla(q, k, v, g), "'g' must have shape (batch, time, heads, K)"),
        (lambda: seqpar.chunk_gla(q, k.float(), v, gla_g), "'k' must have the dtype of 'q'"),
        (lambda: seqpar.chunk_gla(q, k, v, gla_g, chunk_size=0), "'chunk_size' must be positive"),
        (lambda: seqpar.chunk_gla(q, k, v, gla_g, chunk_size=24), "'chunk_size' must be at most"),
        (lambda: seqpar.chunk_gla(q, k, v, gla_g, initial_state=s0[:, :1]), "'initial_state'"),
        (lambda: seqpar.chunk_gated_delta_rule(q, k, v, gla_g, beta), "'g' must have shape"),
        (lambda: seqpar.chunk_gated_delta_rule(q, k, v, g, beta.float()),
         "'beta' must have the dtype of 'q'"),
        (lambda: seqpar.chunk_gla(q.int(), k.int(), v.int(), gla_g.int()), "'q' has dtype"),
    ]
    for call, message in cases:
        with pytest.raises(RuntimeError) as info:
            call()
        assert message in str(info.value), str(info.value)


def test_previous_steps():
    """seqpar.previous_steps: the window before x (initial or zeros) and the last one, as
    slices of [initial, x]; a short causal convolution over a sequence fed in two pieces
    equals the whole; gradients; errors name the argument."""
    x = torch.randn(2, 7, 3, dtype=torch.float64)
    init = torch.randn(2, 4, 3, dtype=torch.float64)
    before, last = seqpar.previous_steps(x, 4)
    assert torch.equal(before, torch.zeros(2, 4, 3, dtype=torch.float64))
    assert torch.equal(last, x[:, 3:])
    before, last = seqpar.previous_steps(x[:, :2], 4, init)
    assert torch.equal(before, init) and torch.equal(last, torch.cat([init[:, 2:], x[:, :2]], 1))

    weight = torch.randn(3, 1, 5, dtype=torch.float64)
    conv = lambda seq: F.conv1d(seq.transpose(1, 2), weight, groups=3)  # noqa: E731
    whole = conv(torch.cat([init, x], 1))
    b1, l1 = seqpar.previous_steps(x[:, :2], 4, init)
    b2, _ = seqpar.previous_steps(x[:, 2:], 4, l1)
    pieces = torch.cat([conv(torch.cat([b1, x[:, :2]], 1)), conv(torch.cat([b2, x[:, 2:]], 1))], 2)
    assert torch.allclose(pieces, whole, atol=1e-12)

    xg, ig = x.clone().requires_grad_(), init.clone().requires_grad_()
    assert gradcheck(lambda a, b: seqpar.previous_steps(a, 3, b), (xg, ig[:, :3]))
    torch.library.opcheck(torch.ops.seqpar.previous_steps.default, (xg, 3, ig[:, :3].detach()))

    for call, message in [
        (lambda: seqpar.previous_steps(x[0], 2), "'x' must be (batch, time, channels)"),
        (lambda: seqpar.previous_steps(x, 0), "'width' must be >= 1"),
        (lambda: seqpar.previous_steps(x, 2, init), "'initial' must be (batch, width, channels)"),
        (lambda: seqpar.previous_steps(x, 4, init.float()), "'initial' must have x's dtype"),
        (lambda: seqpar.previous_steps(x.int(), 2), "'x' must be floating point"),
    ]:
        with pytest.raises(RuntimeError) as info:
            call()
        assert message in str(info.value), str(info.value)


def test_causal_conv1d():
    """seqpar.causal_conv1d against the formula written out per step; pieces with the carried
    state equal the whole; width 1; gradients; errors."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 9, 5, generator=gen, dtype=torch.float64)
    w = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    bias = torch.randn(5, generator=gen, dtype=torch.float64)
    init = torch.randn(2, 3, 5, generator=gen, dtype=torch.float64)
    padded = torch.cat([init, x], 1)
    ref = torch.stack([bias + sum(w[:, j] * padded[:, t + j] for j in range(4))
                       for t in range(9)], 1)
    y, final = seqpar.causal_conv1d(x, w, bias, "silu", init, output_final_state=True)
    assert torch.allclose(y, F.silu(ref), atol=1e-12) and torch.equal(final, padded[:, -3:])
    y1, f1 = seqpar.causal_conv1d(x[:, :2], w, bias, initial_state=init, output_final_state=True)
    y2, _ = seqpar.causal_conv1d(x[:, 2:], w, bias, initial_state=f1)
    assert torch.allclose(torch.cat([y1, y2], 1), ref, atol=1e-12)
    y, final = seqpar.causal_conv1d(x, w[:, :1], output_final_state=True)
    assert torch.allclose(y, x * w[:, 0]) and final.shape == (2, 0, 5)
    y, _ = seqpar.causal_conv1d(x[:, :0], w, bias)
    assert y.shape == (2, 0, 5)
    args = [t.clone().requires_grad_() for t in (x, w, bias, init)]
    assert gradcheck(lambda a, b, c, d: seqpar.causal_conv1d(a, b, c, "silu", d)[0], args)
    with pytest.raises(RuntimeError, match="'weight' must be"):
        seqpar.causal_conv1d(x, w[:4])
    torch.library.opcheck(torch.ops.seqpar.causal_conv1d.default,
                          (x, init, w.clone().requires_grad_(), bias, True))
    with pytest.raises(ValueError, match="'activation'"):
        seqpar.causal_conv1d(x, w, activation="relu")
