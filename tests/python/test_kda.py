"""seqpar.chunk_kda (Kimi Delta Attention, FLA's chunk_kda) against a float64 per-step loop
written here, S = diag(exp(g_t)) S; S += beta_t k_t (v_t - S^T k_t)^T; o_t = scale S^T q_t,
and against FLA's naive_recurrent_kda when fla-core is installed: lengths 0 to 300, chunk
sizes 16 to 64, decays near 0 and near 1 per key channel, with and without an initial state,
float32 and bfloat16, every gradient against the loop's autograd, gradcheck, opcheck, packed
sequences, grouped value heads and FLA's in-kernel options, and the errors that name the
argument."""
import pytest
import torch
import torch.nn.functional as F

import seqpar
from reference import FLA_MISSING, fla_naive


def loop(q, k, v, g, beta, scale=None, h0=None):
    q, k, v, g, beta = (x.double() for x in (q, k, v, g, beta))
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = K ** -0.5 if scale is None else scale
    S = torch.zeros(B, H, K, V, dtype=torch.float64) if h0 is None else h0.double()
    out = []
    for t in range(T):
        S = S * g[:, t].exp()[..., None]
        kS = torch.einsum("bhk,bhkv->bhv", k[:, t], S)
        S = S + beta[:, t][..., None, None] * k[:, t][..., :, None] * (v[:, t] - kS)[..., None, :]
        out.append(scale * torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    o = torch.stack(out, 1) if out else torch.zeros(B, 0, H, V, dtype=torch.float64)
    return o, S


def inputs(B=1, T=45, H=2, K=8, V=6, dtype=torch.float64, decay="mixed", seed=0):
    torch.manual_seed(seed)
    q = torch.randn(B, T, H, K, dtype=torch.float64)
    k = F.normalize(torch.randn(B, T, H, K, dtype=torch.float64), dim=-1)
    v = torch.randn(B, T, H, V, dtype=torch.float64)
    beta = torch.rand(B, T, H, dtype=torch.float64)
    if decay == "mixed":   # per channel from e^-20 to 1 - 1e-4
        g = -torch.exp(torch.empty(B, T, H, K, dtype=torch.float64).uniform_(-9.2, 3.0))
    elif decay == "slow":
        g = torch.full((B, T, H, K), -1e-4, dtype=torch.float64)
    else:                  # fast: e^-60 .. e^-5 per step, below float32's range within a chunk
        g = -torch.empty(B, T, H, K, dtype=torch.float64).uniform_(5, 60)
    return [x.to(dtype) for x in (q, k, v, g, beta)]


@pytest.mark.parametrize("T", [0, 1, 37, 130])
@pytest.mark.parametrize("chunk", [16, 64])
@pytest.mark.parametrize("decay", ["mixed", "slow", "fast"])
@pytest.mark.parametrize("with_h0", [False, True])
def test_matches_loop_float64(T, chunk, decay, with_h0):
    q, k, v, g, beta = inputs(T=T, decay=decay)
    h0 = torch.randn(1, 2, 8, 6, dtype=torch.float64) if with_h0 else None
    o, S = seqpar.chunk_kda(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                            chunk_size=chunk)
    o_ref, S_ref = loop(q, k, v, g, beta, h0=h0)
    scale = max(o_ref.abs().max().item() if T else 1.0, 1.0)
    assert (o - o_ref).abs().max().item() <= 1e-10 * scale if T else o.shape[1] == 0
    assert (S - S_ref).abs().max().item() <= 1e-10 * max(S_ref.abs().max().item(), 1.0)


@pytest.mark.parametrize("decay", ["mixed", "slow", "fast"])
def test_float32_long(decay):
    q, k, v, g, beta = inputs(T=1000, H=2, K=16, V=16, decay=decay, seed=1)
    o_ref, S_ref = loop(q, k, v, g, beta)
    o, S = seqpar.chunk_kda(*(x.float() for x in (q, k, v, g, beta)), output_final_state=True)
    assert o.dtype == torch.float32 and S.dtype == torch.float32
    assert (o.double() - o_ref).abs().max() <= 5e-5 * o_ref.abs().max()
    assert (S.double() - S_ref).abs().max() <= 5e-5 * S_ref.abs().max()


def test_bfloat16():
    q, k, v, g, beta = inputs(T=200, K=16, V=16, seed=2)
    o_ref, _ = loop(*(x.bfloat16() for x in (q, k, v, g, beta)))
    o, S = seqpar.chunk_kda(*(x.bfloat16() for x in (q, k, v)), g.float(), beta.float(),
                            output_final_state=True)
    assert o.dtype == torch.bfloat16 and S.dtype == torch.float32
    assert (o.double() - o_ref).abs().max() <= 2e-2 * o_ref.abs().max()


def test_gradients_match_loop():
    q, k, v, g, beta = inputs(B=2, T=37, seed=3)
    h0 = torch.randn(2, 2, 8, 6, dtype=torch.float64)
    args = [x.clone().requires_grad_() for x in (q, k, v, g, beta, h0)]
    o, S = seqpar.chunk_kda(*args[:5], initial_state=args[5], output_final_state=True,
                            chunk_size=16)
    wo, wS = torch.randn_like(o), torch.randn_like(S)
    got = torch.autograd.grad((o * wo).sum() + (S * wS).sum(), args)
    ref = [x.clone().requires_grad_() for x in (q, k, v, g, beta, h0)]
    o_r, S_r = loop(*ref[:5], h0=ref[5])
    want = torch.autograd.grad((o_r * wo).sum() + (S_r * wS).sum(), ref)
    for name, a, b in zip("q k v g beta h0".split(), got, want):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9, msg=lambda m: f"grad {name}: {m}")


def test_gradcheck():
    q, k, v, g, beta = inputs(T=11, H=1, K=3, V=2, seed=4)
    h0 = torch.randn(1, 1, 3, 2, dtype=torch.float64)
    args = [x.clone().requires_grad_() for x in (q, k, v, g, beta, h0)]
    assert torch.autograd.gradcheck(
        lambda *a: seqpar.chunk_kda(*a[:5], initial_state=a[5], output_final_state=True,
                                    chunk_size=4), args)


def test_packed_sequences_match_each_sequence():
    cu = torch.tensor([0, 0, 5, 6, 40, 40, 57])
    q, k, v, g, beta = inputs(T=57, seed=5)
    h0 = torch.randn(6, 2, 8, 6, dtype=torch.float64)
    o, S = seqpar.chunk_kda(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                            cu_seqlens=cu, chunk_size=16)
    for i in range(6):
        a, b = int(cu[i]), int(cu[i + 1])
        o_i, S_i = loop(q[:, a:b], k[:, a:b], v[:, a:b], g[:, a:b], beta[:, a:b], h0=h0[i:i + 1])
        torch.testing.assert_close(o[:, a:b], o_i, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(S[i:i + 1], S_i, rtol=1e-10, atol=1e-10)


def test_fla_options_written_out():
    """Grouped value heads, the L2 norm, the gate -exp(A_log) softplus(g + dt_bias) and its
    lower-bound form, beta sigmoid with allow_neg_eigval, the V-first state: against the loop
    on the inputs transformed here."""
    torch.manual_seed(6)
    B, T, H, HV, K, V = 1, 29, 2, 4, 8, 5
    q, k = torch.randn(B, T, H, K, dtype=torch.float64), torch.randn(B, T, H, K, dtype=torch.float64)
    v = torch.randn(B, T, HV, V, dtype=torch.float64)
    g_raw, b_raw = torch.randn(B, T, HV, K, dtype=torch.float64), torch.randn(B, T, HV, dtype=torch.float64)
    A_log, dt_bias = torch.randn(HV, dtype=torch.float64) - 1, torch.randn(HV * K, dtype=torch.float64)
    h0 = torch.randn(B, HV, V, K, dtype=torch.float64)
    l2 = lambda x: x / ((x * x).sum(-1, keepdim=True) + 1e-6).sqrt()  # noqa: E731
    qn, kn = l2(q).repeat_interleave(2, 2), l2(k).repeat_interleave(2, 2)
    beta = 2 * torch.sigmoid(b_raw)
    x = g_raw + dt_bias.view(HV, K)
    for bounded in (False, True):
        g = -5.0 * torch.sigmoid(A_log.exp().view(HV, 1) * x) if bounded else \
            -A_log.exp().view(HV, 1) * torch.log1p(x.exp())
        o_ref, S_ref = loop(qn, kn, v, g, beta, h0=h0.transpose(-1, -2))
        o, S = seqpar.chunk_kda(q, k, v, g_raw, b_raw, initial_state=h0, output_final_state=True,
                                use_qk_l2norm_in_kernel=True, use_gate_in_kernel=True,
                                use_beta_sigmoid_in_kernel=True, allow_neg_eigval=True,
                                safe_gate=bounded, lower_bound=-5.0 if bounded else None,
                                state_v_first=True, A_log=A_log, dt_bias=dt_bias,
                                disable_recompute=True, chunk_size=16)
        torch.testing.assert_close(o, o_ref, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(S, S_ref.transpose(-1, -2), rtol=1e-10, atol=1e-10)


def test_opcheck():
    q, k, v, g, beta = inputs(T=21, dtype=torch.float32, seed=7)
    torch.library.opcheck(torch.ops.seqpar.chunk_kda.default,
                          (q, k, v, g, beta, None, None, 16, None))
    torch.library.opcheck(torch.ops.seqpar.chunk_kda.default,
                          (q, k, v, g, beta, 0.5, torch.randn(1, 2, 8, 6), 32, None))


def test_errors_name_the_argument():
    q, k, v, g, beta = inputs(T=9)
    with pytest.raises(RuntimeError, match="'chunk_size'"):
        seqpar.chunk_kda(q, k, v, g, beta, chunk_size=24)
    with pytest.raises(RuntimeError, match="'g'"):
        seqpar.chunk_kda(q, k, v, g[..., 0], beta)
    with pytest.raises(RuntimeError, match="'beta'"):
        seqpar.chunk_kda(q, k, v, g, beta[:, :-1])
    for name, value in (("cp_context", object()), ("return_intermediate_states", True),
                        ("use_graph", True), ("max_num_seqs", 4), ("head_first", False)):
        with pytest.raises(RuntimeError, match=f"'{name}'"):
            seqpar.chunk_kda(q, k, v, g, beta, **{name: value})
    with pytest.raises(ValueError, match="'A_log'"):
        seqpar.chunk_kda(q, k, v, g, beta, use_gate_in_kernel=True)


@pytest.mark.skipif(fla_naive("kda") is None,
                    reason=FLA_MISSING)
def test_against_fla_naive():
    naive = fla_naive("kda")
    q, k, v, g, beta = inputs(T=77, dtype=torch.float32, seed=8)
    h0 = torch.randn(1, 2, 8, 6)
    o_fla, S_fla = naive.naive_recurrent_kda(q, k, v, g, beta, initial_state=h0.clone(),
                                             output_final_state=True)
    o, S = seqpar.chunk_kda(q, k, v, g, beta, initial_state=h0, output_final_state=True)
    torch.testing.assert_close(o, o_fla, rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(S, S_fla, rtol=2e-5, atol=2e-5)
