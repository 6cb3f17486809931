"""seqpar.chunk_gated_delta_rule and seqpar.chunk_gla called the way flash-linear-attention (FLA)
code calls FLA's functions: grouped value heads, the in-kernel L2 norm, gate and beta
activations, the V-first state layout, half-precision inputs, and the arguments seqpar refuses.

Each option is checked against a float64 per-step loop written here (values, final state and the
gradients of every tensor argument), and, when fla-core is installed, against FLA's own pure
PyTorch references (fla/ops/*/naive.py, loaded by file path: importing fla.ops needs Triton)
and FLA's signatures, read from its source with ast for the same reason.
"""
import ast
import importlib.metadata
import importlib.util
import inspect
import os

import pytest
import torch
import torch.nn.functional as F

import seqpar
import seqpar.sp

FUNCTIONS = {"gated_delta": seqpar.chunk_gated_delta_rule, "gla": seqpar.chunk_gla}
SP_FUNCTIONS = {"gated_delta": seqpar.sp.chunk_gated_delta_rule, "gla": seqpar.sp.chunk_gla}
FLA_FILES = {"gated_delta": ("gated_delta_rule", "chunk_gated_delta_rule"),
             "gla": ("gla", "chunk_gla")}


def fla_dir():
    spec = importlib.util.find_spec("fla")  # finds the package without importing it
    return None if spec is None else list(spec.submodule_search_locations)[0]


needs_fla = pytest.mark.skipif(
    fla_dir() is None,
    reason="fla-core not installed (pip install --no-deps fla-core einops): FLA's references "
           "and signatures are not compared; the float64 loop tests still run")


def fla_naive(model):
    sub = FLA_FILES[model][0]
    spec = importlib.util.spec_from_file_location(f"fla_naive_{sub}",
                                                  os.path.join(fla_dir(), "ops", sub, "naive.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the float64 per-step loop ----------------------------------------------------------------

def activated(q, k, g, beta, opts):
    """FLA's in-kernel preprocessing written out: l2norm x / sqrt(|x|^2 + 1e-6), the GDN gate
    -exp(A_log) log(1 + exp(g + dt_bias)), beta 1 / (1 + exp(-beta)) (times 2)."""
    if opts.get("use_qk_l2norm_in_kernel"):
        q = q / ((q * q).sum(-1, keepdim=True) + 1e-6).sqrt()
        k = k / ((k * k).sum(-1, keepdim=True) + 1e-6).sqrt()
    if opts.get("use_gate_in_kernel"):
        x = g + (opts["dt_bias"] if opts.get("dt_bias") is not None else 0)
        g = -opts["A_log"].exp() * torch.log1p(x.exp())
    if opts.get("use_beta_sigmoid_in_kernel"):
        beta = (2.0 if opts.get("allow_neg_eigval") else 1.0) / (1 + (-beta).exp())
    return q, k, g, beta


def loop(model, q, k, v, g, beta, s0, opts, scale=None):
    """S_t per value head j, reading q/k head j // (HV // H); returns (o, S_T)."""
    q, k, g, beta = activated(q, k, g, beta, opts)
    B, T, H, K = q.shape
    HV, V = v.shape[2], v.shape[3]
    heads = torch.arange(HV) // (HV // H)
    scale = K ** -0.5 if scale is None else scale
    S = s0.clone() if s0 is not None else q.new_zeros(B, HV, K, V)
    out = []
    for t in range(T):
        qt, kt, vt = q[:, t, heads], k[:, t, heads], v[:, t]
        if model == "gla":
            S = g[:, t].exp()[..., None] * S + kt[..., None] * vt[..., None, :]
        else:
            S = g[:, t].exp()[..., None, None] * S
            u = (vt - torch.einsum("bhk,bhkv->bhv", kt, S)) * beta[:, t, :, None]
            S = S + kt[..., None] * u[..., None, :]
        out.append(scale * torch.einsum("bhk,bhkv->bhv", qt, S))
    return torch.stack(out, 1), S


def problem(model, T=100, B=2, H=2, G=1, K=8, V=6, opts=(), seed=0, dtype=torch.float64):
    """Inputs in FLA's layout for H q/k heads and HV = G * H value heads; opts names the
    options to switch on ("l2norm", "gate", "gate_no_bias", "sigmoid", "neg")."""
    gen = torch.Generator().manual_seed(seed)
    rn = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    ru = lambda *s: torch.rand(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    HV = G * H
    q, v = rn(B, T, H, K), rn(B, T, HV, V)
    # Without the in-kernel L2 norm the keys are unit vectors already (the delta rule's step is
    # a contraction for beta in (0, 1]); with it, keys of any length.
    k = rn(B, T, H, K)
    if "l2norm" not in opts and model != "gla":
        k = F.normalize(k, dim=-1)
    gate = "gate" in opts or "gate_no_bias" in opts
    if model == "gla":
        g = -ru(B, T, HV, K)
    else:
        g = rn(B, T, HV) if gate else -ru(B, T, HV)  # raw gate inputs or log decays
    beta = None
    if model != "gla":
        beta = rn(B, T, HV) * 2 if "sigmoid" in opts else ru(B, T, HV)
    s0 = rn(B, HV, K, V)
    cast = lambda x: None if x is None else x.to(dtype)  # noqa: E731
    tensors = {"q": cast(q), "k": cast(k), "v": cast(v), "g": cast(g), "beta": cast(beta),
               "initial_state": s0 if dtype == torch.float64 else s0.float()}
    kw = {}
    if "l2norm" in opts:
        kw["use_qk_l2norm_in_kernel"] = True
    if gate:
        kw["use_gate_in_kernel"] = True
        tensors["A_log"] = (ru(HV) - 1.5).to(dtype)
        if "gate" in opts:
            tensors["dt_bias"] = rn(HV).to(dtype)
    if "sigmoid" in opts:
        kw["use_beta_sigmoid_in_kernel"] = True
    if "neg" in opts:
        kw["allow_neg_eigval"] = True
    return {n: t for n, t in tensors.items() if t is not None}, kw


def call(fn, model, tensors, kw, **extra):
    t = dict(tensors)
    args = [t.pop("q"), t.pop("k"), t.pop("v"), t.pop("g")]
    if model != "gla":
        args.append(t.pop("beta"))
    return fn(*args, output_final_state=True, **t, **kw, **extra)


def reference(model, tensors, kw):
    t = tensors
    opts = dict(kw, A_log=t.get("A_log"), dt_bias=t.get("dt_bias"))
    return loop(model, t["q"], t["k"], t["v"], t["g"], t.get("beta"), t["initial_state"], opts)


def rel_err(got, want):
    got, want = got.detach().double(), want.detach().double()
    return ((got - want).abs().max() / want.abs().max().clamp_min(1e-300)).item()


def check_against_loop(model, tensors, kw, tol=1e-10, chunk_size=16):
    leaves = {n: x.clone().requires_grad_() for n, x in tensors.items()}
    o, S = call(FUNCTIONS[model], model, leaves, kw, chunk_size=chunk_size)
    ref_leaves = {n: x.clone().requires_grad_() for n, x in tensors.items()}
    o_ref, S_ref = reference(model, ref_leaves, kw)
    assert o.shape == o_ref.shape and S.shape == S_ref.shape
    assert rel_err(o, o_ref) < tol, "o"
    assert rel_err(S, S_ref) < tol, "final_state"
    gen = torch.Generator().manual_seed(1)
    wo = torch.randn(o_ref.shape, generator=gen, dtype=torch.float64)
    wS = torch.randn(S_ref.shape, generator=gen, dtype=torch.float64)
    names = list(leaves)
    got = torch.autograd.grad((o.double() * wo).sum() + (S.double() * wS).sum(),
                              [leaves[n] for n in names])
    want = torch.autograd.grad((o_ref * wo).sum() + (S_ref * wS).sum(),
                               [ref_leaves[n] for n in names])
    for name, a, b in zip(names, got, want):
        assert a.shape == b.shape, name
        assert rel_err(a, b) < tol * 10, f"gradient of {name}: {rel_err(a, b):.3g}"


# --- against the float64 loop: every option, grouped value heads ------------------------------

GDN_OPTIONS = [(), ("l2norm",), ("gate",), ("gate_no_bias",), ("sigmoid",), ("sigmoid", "neg"),
               ("l2norm", "gate", "sigmoid", "neg")]


@pytest.mark.parametrize("G", [1, 2, 4])
@pytest.mark.parametrize("opts", GDN_OPTIONS, ids=lambda o: "+".join(o) or "plain")
def test_gated_delta_rule_options_and_grouped_heads(opts, G):
    tensors, kw = problem("gated_delta", T=100, G=G, opts=opts)
    check_against_loop("gated_delta", tensors, kw)


@pytest.mark.parametrize("G", [1, 2, 4])
def test_gla_grouped_heads(G):
    tensors, kw = problem("gla", T=100, G=G)
    check_against_loop("gla", tensors, kw)


@pytest.mark.parametrize("model", ["gated_delta", "gla"])
def test_state_v_first(model):
    """FLA's V-first layout: initial and final states (B, HV, V, K), the same recurrence."""
    tensors, kw = problem(model, T=40, G=2, opts=("l2norm",) if model != "gla" else ())
    o, S = call(FUNCTIONS[model], model, tensors, kw)
    vfirst = dict(tensors, initial_state=tensors["initial_state"].transpose(-1, -2).contiguous())
    o2, S2 = call(FUNCTIONS[model], model, vfirst, kw, state_v_first=True)
    assert torch.equal(o, o2) and torch.equal(S2, S.transpose(-1, -2))
    # FLA's deprecated name for it, with FLA's warning.
    with pytest.warns(DeprecationWarning, match="transpose_state_layout"):
        o3, S3 = call(FUNCTIONS[model], model, vfirst, kw, transpose_state_layout=True)
    assert torch.equal(o3, o) and torch.equal(S3, S2)


def test_keyword_call_as_transformers_makes_it():
    """The call transformers' Qwen3-Next layer makes of FLA's function, all by keyword."""
    tensors, _ = problem("gated_delta", T=30, G=2, opts=("l2norm",))
    t = tensors
    o, S = seqpar.chunk_gated_delta_rule(t["q"], t["k"], t["v"], g=t["g"], beta=t["beta"],
                                         initial_state=None, output_final_state=True,
                                         use_qk_l2norm_in_kernel=True)
    o_ref, S_ref = loop("gated_delta", t["q"], t["k"], t["v"], t["g"], t["beta"], None,
                        {"use_qk_l2norm_in_kernel": True})
    assert rel_err(o, o_ref) < 1e-10 and rel_err(S, S_ref) < 1e-10


def test_a_log_without_the_gate_flag_is_not_read():
    """As in FLA: A_log and dt_bias are read only with use_gate_in_kernel=True."""
    tensors, kw = problem("gated_delta", T=20)
    o, S = call(seqpar.chunk_gated_delta_rule, "gated_delta", tensors, kw)
    o2, S2 = call(seqpar.chunk_gated_delta_rule, "gated_delta", tensors, kw,
                  A_log=torch.zeros(2, dtype=torch.float64))
    assert torch.equal(o, o2) and torch.equal(S, S2)


# --- half precision ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 5e-2), (torch.float16, 1e-2)], ids=str)
@pytest.mark.parametrize("model", ["gated_delta", "gla"])
def test_half_precision_dtypes(model, dtype, tol):
    """Outputs and gradients in the inputs' dtype, final state float32; values within the
    dtype's rounding of the float64 loop on the same (rounded) inputs."""
    opts = ("l2norm", "gate", "sigmoid") if model != "gla" else ()
    tensors, kw = problem(model, T=64, G=2, opts=opts, dtype=dtype)
    leaves = {n: x.clone().requires_grad_() for n, x in tensors.items()}
    o, S = call(FUNCTIONS[model], model, leaves, kw)
    assert o.dtype == dtype and S.dtype == torch.float32
    o.float().sum().backward()
    for name, x in leaves.items():
        assert x.grad is not None and x.grad.dtype == x.dtype, name
    o_ref, S_ref = reference(model, {n: x.double() for n, x in tensors.items()}, kw)
    assert rel_err(o, o_ref) < tol and rel_err(S, S_ref) < tol


# --- refused arguments ------------------------------------------------------------------------

REFUSED = [
    ("cp_context", lambda: object(), "seqpar.sp"),
    ("head_first", lambda: False, "not supported"),
    ("no_such_argument", lambda: 1, "not supported"),
]


@pytest.mark.parametrize("where", ["one process", "sp"])
@pytest.mark.parametrize("model", ["gated_delta", "gla"])
@pytest.mark.parametrize("name,value,message", REFUSED, ids=[r[0] for r in REFUSED])
def test_unsupported_argument_is_refused_by_name(model, where, name, value, message):
    """RuntimeError naming the argument, before any work (the sp versions raise it before the
    first collective, so no process group is needed here)."""
    if model == "gla" and name in ("chunk_indices", "cp_context"):
        pytest.skip("not an argument of FLA's chunk_gla: the unknown-argument case")
    fn = (FUNCTIONS if where == "one process" else SP_FUNCTIONS)[model]
    tensors, kw = problem(model, T=20)
    with pytest.raises(RuntimeError, match=f"'{name}'.*{message}"):
        call(fn, model, tensors, kw, **{name: value()})


@pytest.mark.parametrize("fn", [seqpar.chunk_gated_delta_rule, seqpar.sp.chunk_gated_delta_rule])
def test_invalid_options_raise_value_error(fn):
    tensors, kw = problem("gated_delta", T=10, H=2)
    with pytest.raises(ValueError, match="HV = 3 heads, not a multiple of the H = 2"):
        call(fn, "gated_delta", dict(tensors, v=tensors["v"][:, :, :1].expand(-1, -1, 3, -1),
                                     g=tensors["g"][..., :1].expand(-1, -1, 3),
                                     beta=tensors["beta"][..., :1].expand(-1, -1, 3)), kw)
    with pytest.raises(ValueError, match="'allow_neg_eigval=True' requires"):
        call(fn, "gated_delta", tensors, kw, allow_neg_eigval=True)
    with pytest.raises(ValueError, match="'A_log' must be given"):
        call(fn, "gated_delta", tensors, kw, use_gate_in_kernel=True)


def test_gla_grouped_heads_not_a_multiple():
    tensors, kw = problem("gla", T=10, H=2, G=2)
    with pytest.raises(ValueError, match="'v' has HV = 3 heads"):
        call(seqpar.chunk_gla, "gla", dict(tensors, v=tensors["v"][:, :, :3]), kw)


# --- FLA itself -------------------------------------------------------------------------------

def fla_parameters(model):
    """FLA's public function's parameters, (name, kind, default), from its source."""
    sub, name = FLA_FILES[model]
    with open(os.path.join(fla_dir(), "ops", sub, "chunk.py")) as f:
        tree = ast.parse(f.read())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    a = fn.args
    defaults = [inspect.Parameter.empty] * (len(a.args) - len(a.defaults))
    defaults += [ast.literal_eval(d) for d in a.defaults]
    params = [(x.arg, inspect.Parameter.POSITIONAL_OR_KEYWORD, d) for x, d in zip(a.args, defaults)]
    params += [(x.arg, inspect.Parameter.KEYWORD_ONLY,
                inspect.Parameter.empty if d is None else ast.literal_eval(d))
               for x, d in zip(a.kwonlyargs, a.kw_defaults)]
    return params, a.kwarg is not None


@needs_fla
@pytest.mark.parametrize("where", ["one process", "sp"])
@pytest.mark.parametrize("model", ["gated_delta", "gla"])
def test_signature_matches_fla(model, where):
    """FLA's parameters, in order, with FLA's kinds and defaults, then seqpar's keyword-only
    extras (FLA's own **kwargs names for gated DeltaNet, chunk_size, group and algo), then
    **kwargs."""
    fla, fla_has_kwargs = fla_parameters(model)
    ours = list(inspect.signature((FUNCTIONS if where == "one process" else SP_FUNCTIONS)[model])
                .parameters.values())
    assert [(p.name, p.kind, p.default) for p in ours[:len(fla)]] == fla, \
        f"fla-core {importlib.metadata.version('fla-core')}"
    extras = ours[len(fla):-1]
    assert all(p.kind == inspect.Parameter.KEYWORD_ONLY for p in extras)
    assert ours[-1].kind == inspect.Parameter.VAR_KEYWORD
    expected = (["use_gate_in_kernel", "A_log", "dt_bias"] if model != "gla" else []) + \
        ["chunk_size"] + (["group", "algo"] if where == "sp" else [])
    assert [p.name for p in extras] == expected
    if fla_has_kwargs:  # FLA reads these from its **kwargs, with these defaults
        assert {p.name: p.default for p in extras if p.name not in ("group", "algo")} == dict(
            {"chunk_size": 64},
            **({"use_gate_in_kernel": False, "A_log": None, "dt_bias": None}
               if model != "gla" else {}))


@needs_fla
@pytest.mark.parametrize("opts", GDN_OPTIONS, ids=lambda o: "+".join(o) or "plain")
def test_gated_delta_rule_against_fla_naive(opts):
    """FLA's naive_recurrent_gated_delta_rule (float32 inside) on the preprocessed inputs, heads
    expanded by index; and the float64 loop above against it."""
    naive = fla_naive("gated_delta")
    tensors, kw = problem("gated_delta", T=80, G=2, opts=opts)
    o, S = call(seqpar.chunk_gated_delta_rule, "gated_delta", tensors, kw)
    t = tensors
    opts_ = dict(kw, A_log=t.get("A_log"), dt_bias=t.get("dt_bias"))
    q, k, g, beta = activated(t["q"], t["k"], t["g"], t["beta"], opts_)
    heads = torch.arange(t["v"].shape[2]) // 2
    o_fla, S_fla = naive.naive_recurrent_gated_delta_rule(
        q[:, :, heads], k[:, :, heads], t["v"], beta, g, initial_state=t["initial_state"],
        output_final_state=True)
    assert rel_err(o, o_fla) < 1e-5 and rel_err(S, S_fla) < 1e-5
    o_loop, S_loop = reference("gated_delta", tensors, kw)
    assert rel_err(o_loop, o_fla) < 1e-5 and rel_err(S_loop, S_fla) < 1e-5
    o_chunk, _ = naive.naive_chunk_gated_delta_rule(
        q[:, :, heads], k[:, :, heads], t["v"], g, beta, chunk_size=16,
        initial_state=t["initial_state"], output_final_state=True)
    assert rel_err(o, o_chunk) < 1e-5


@needs_fla
def test_gla_against_fla_naive():
    naive = fla_naive("gla")
    tensors, kw = problem("gla", T=80)
    o, S = call(seqpar.chunk_gla, "gla", tensors, kw)
    t = tensors
    o_fla, S_fla = naive.naive_recurrent_gla(t["q"], t["k"], t["v"], t["g"], t["initial_state"],
                                             output_final_state=True)
    assert rel_err(o, o_fla) < 1e-5 and rel_err(S, S_fla) < 1e-5



def test_float32_gates_with_half_precision_inputs():
    """FLA takes g and beta in float32 with bfloat16 q, k, v (transformers passes them so):
    rounded to q's dtype, the same as passing them rounded."""
    tensors, kw = problem("gated_delta", T=40, G=2, opts=("l2norm",), dtype=torch.bfloat16)
    rounded = call(seqpar.chunk_gated_delta_rule, "gated_delta", tensors, kw)
    mixed = dict(tensors, g=tensors["g"].float() * (1 + 1e-4), beta=tensors["beta"].float())
    got = call(seqpar.chunk_gated_delta_rule, "gated_delta", mixed, kw)
    assert got[0].dtype == torch.bfloat16
    assert torch.equal(got[0], rounded[0]) and torch.equal(got[1], rounded[1])
    gla, gla_kw = problem("gla", T=40, dtype=torch.bfloat16)
    o, S = call(seqpar.chunk_gla, "gla", dict(gla, g=gla["g"].float()), gla_kw)
    o2, S2 = call(seqpar.chunk_gla, "gla", gla, gla_kw)
    assert torch.equal(o, o2) and torch.equal(S, S2)


def test_assigned_in_transformers_qwen3_next_layer():
    """seqpar.chunk_gated_delta_rule assigned where transformers' Qwen3-Next gated DeltaNet
    layer calls FLA's function (grouped value heads, L2 norm in the kernel, cu_seqlens=None,
    float32 g with a bfloat16 model), against the layer's own PyTorch fallback."""
    modeling = pytest.importorskip("transformers.models.qwen3_next.modeling_qwen3_next",
                                   reason="transformers (with Qwen3-Next) not installed")
    from transformers import Qwen3NextConfig
    config = Qwen3NextConfig(hidden_size=64, linear_num_value_heads=4, linear_num_key_heads=2,
                             linear_key_head_dim=16, linear_value_head_dim=8,
                             linear_conv_kernel_dim=4, num_attention_heads=2,
                             num_key_value_heads=1, head_dim=16, intermediate_size=64,
                             num_hidden_layers=1, vocab_size=32)
    torch.manual_seed(0)
    fallback = modeling.torch_chunk_gated_delta_rule
    for dtype, tol in ((torch.float64, 1e-5), (torch.bfloat16, 5e-2)):
        layer = modeling.Qwen3NextGatedDeltaNet(config, 0).to(dtype)
        x = torch.randn(2, 100, 64, dtype=dtype)
        y_ref = layer(x)  # the fallback computes in float32
        try:
            modeling.torch_chunk_gated_delta_rule = seqpar.chunk_gated_delta_rule
            y = layer(x)
        finally:
            modeling.torch_chunk_gated_delta_rule = fallback
        assert y.dtype == dtype and rel_err(y, y_ref) < tol, (dtype, rel_err(y, y_ref))


@pytest.mark.parametrize("model", ["gated_delta", "gla"])
def test_old_positional_chunk_size_is_refused(model):
    """seqpar's chunk_size used to follow output_final_state; in FLA's order a flag is there,
    and a chunk size passed by position must not switch it on."""
    tensors, _ = problem(model, T=20)
    t = tensors
    args = [t["q"], t["k"], t["v"], t["g"]] + ([t["beta"]] if model != "gla" else [])
    flag = "use_qk_l2norm_in_kernel" if model != "gla" else "state_v_first"
    with pytest.raises(TypeError, match=f"'{flag}' must be a bool, got 16"):
        FUNCTIONS[model](*args, None, t["initial_state"], True, 16)
    with pytest.raises(TypeError, match="'state_v_first' must be a bool"):
        SP_FUNCTIONS[model](*args, state_v_first=16)
