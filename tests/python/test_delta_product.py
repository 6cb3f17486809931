"""seqpar.chunk_gated_delta_product (gated DeltaProduct, FLA's chunk_gated_delta_product) against
a float64 per-token loop written here (decay once per token, then num_householder delta-rule
steps, then the readout), and against FLA's naive_recurrent_gated_delta_product when fla-core is
installed; num_householder = 1 against chunk_gated_delta_rule; without a gate; grouped value
heads and the in-kernel L2 norm; packed sequences; gradients of every input against the loop's
autograd; gradcheck and opcheck; bfloat16; the errors that name the argument."""
import pytest
import torch

import seqpar
from reference import FLA_MISSING, fla_naive


def loop(q, k, v, g, beta, n, scale=None, h0=None):
    """float64 reference: q (B, T, H, K); k, v, beta with T n rows; g (B, T, H) or None."""
    q, k, v, beta = (x.double() for x in (q, k, v, beta))
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = K ** -0.5 if scale is None else scale
    S = torch.zeros(B, H, K, V, dtype=torch.float64) if h0 is None else h0.double()
    out = []
    for t in range(T):
        if g is not None:
            S = S * g[:, t].double().exp()[..., None, None]
        for j in range(n):
            kk, vv, bb = k[:, t * n + j], v[:, t * n + j], beta[:, t * n + j]
            kS = torch.einsum("bhk,bhkv->bhv", kk, S)
            S = S + bb[..., None, None] * kk[..., :, None] * (vv - kS)[..., None, :]
        out.append(scale * torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    o = torch.stack(out, 1) if out else torch.zeros(B, 0, H, V, dtype=torch.float64)
    return o, S


def inputs(B=1, T=37, H=2, K=8, V=6, n=2, dtype=torch.float64, gate=True, seed=0, slow=False):
    torch.manual_seed(seed)
    q = torch.randn(B, T, H, K, dtype=dtype)
    k = torch.nn.functional.normalize(torch.randn(B, T * n, H, K, dtype=torch.float64), dim=-1)
    v = torch.randn(B, T * n, H, V, dtype=dtype)
    beta = torch.rand(B, T * n, H, dtype=torch.float64).to(dtype)
    # decays spread from near 0 (log -5) to near 1 (log -1e-4)
    g = (-torch.exp(torch.empty(B, T, H).uniform_(-9, 1.6))).to(dtype) if gate else None
    if slow and gate:
        g = torch.full((B, T, H), -1e-4, dtype=dtype)
    return q, k.to(dtype), v, g, beta


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("gate", [True, False])
@pytest.mark.parametrize("chunk", [16, 64])
def test_matches_loop(n, gate, chunk):
    q, k, v, g, beta = inputs(n=n, gate=gate, T=45)
    h0 = torch.randn(1, 2, 8, 6, dtype=torch.float64)
    o, S = seqpar.chunk_gated_delta_product(q, k, v, g, beta, n, initial_state=h0,
                                            output_final_state=True, chunk_size=chunk)
    o_ref, S_ref = loop(q, k, v, g, beta, n, h0=h0)
    torch.testing.assert_close(o, o_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(S, S_ref, rtol=1e-10, atol=1e-10)


def test_one_factor_is_gated_deltanet():
    q, k, v, g, beta = inputs(n=1, dtype=torch.float32, T=130)
    o, S = seqpar.chunk_gated_delta_product(q, k, v, g, beta, 1, output_final_state=True)
    o2, S2 = seqpar.chunk_gated_delta_rule(q, k, v, g, beta, output_final_state=True)
    torch.testing.assert_close(o, o2, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(S, S2, rtol=1e-6, atol=1e-6)


def test_gradients_match_loop():
    n = 2
    q, k, v, g, beta = inputs(n=n, T=21, B=2)
    h0 = torch.randn(2, 2, 8, 6, dtype=torch.float64)
    args = [x.clone().requires_grad_() for x in (q, k, v, g, beta, h0)]
    o, S = seqpar.chunk_gated_delta_product(*args[:5], n, initial_state=args[5],
                                            output_final_state=True, chunk_size=8)
    wo, wS = torch.randn_like(o), torch.randn_like(S)
    grads = torch.autograd.grad((o * wo).sum() + (S * wS).sum(), args)
    ref = [x.clone().requires_grad_() for x in (q, k, v, g, beta, h0)]
    o_r, S_r = loop(*ref[:5], n, h0=ref[5])
    grads_ref = torch.autograd.grad((o_r * wo).sum() + (S_r * wS).sum(), ref)
    for name, a, b in zip("q k v g beta h0".split(), grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=lambda m: f"grad {name}: {m}")


def test_gradcheck():
    q, k, v, g, beta = inputs(n=2, T=7, H=1, K=3, V=2)
    args = [x.clone().requires_grad_() for x in (q, k, v, g, beta)]
    assert torch.autograd.gradcheck(
        lambda *a: seqpar.chunk_gated_delta_product(*a, 2, output_final_state=True,
                                                    chunk_size=4), args)


def test_packed_sequences_match_each_sequence():
    n = 3
    cu = torch.tensor([0, 0, 5, 6, 23, 23, 40])
    q, k, v, g, beta = inputs(n=n, T=40)
    h0 = torch.randn(6, 2, 8, 6, dtype=torch.float64)
    o, S = seqpar.chunk_gated_delta_product(q, k, v, g, beta, n, initial_state=h0,
                                            output_final_state=True, cu_seqlens=cu, chunk_size=8)
    for i in range(6):
        a, b = int(cu[i]), int(cu[i + 1])
        o_i, S_i = loop(q[:, a:b], k[:, a * n:b * n], v[:, a * n:b * n], g[:, a:b],
                        beta[:, a * n:b * n], n, h0=h0[i:i + 1])
        torch.testing.assert_close(o[:, a:b], o_i, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(S[i:i + 1], S_i, rtol=1e-10, atol=1e-10)


def test_grouped_value_heads_and_l2norm():
    n = 2
    torch.manual_seed(3)
    q = torch.randn(1, 19, 2, 8, dtype=torch.float64)
    k = torch.randn(1, 38, 2, 8, dtype=torch.float64)
    v = torch.randn(1, 38, 4, 5, dtype=torch.float64)
    beta = torch.rand(1, 38, 4, dtype=torch.float64)
    g = -torch.rand(1, 19, 4, dtype=torch.float64)
    o, S = seqpar.chunk_gated_delta_product(q, k, v, g, beta, n, output_final_state=True,
                                            use_qk_l2norm_in_kernel=True)
    qn = q / (q.pow(2).sum(-1, keepdim=True) + 1e-6).sqrt()
    kn = k / (k.pow(2).sum(-1, keepdim=True) + 1e-6).sqrt()
    o_ref, S_ref = loop(qn.repeat_interleave(2, 2), kn.repeat_interleave(2, 2), v, g, beta, n)
    torch.testing.assert_close(o, o_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(S, S_ref, rtol=1e-10, atol=1e-10)


def test_bfloat16_close_to_float64():
    q, k, v, g, beta = inputs(n=2, T=200, H=2, K=16, V=16)
    o_ref, _ = loop(q, k, v, g, beta, 2)
    o, S = seqpar.chunk_gated_delta_product(*(x.bfloat16() for x in (q, k, v)), g.float(),
                                            beta.float(), 2, output_final_state=True)
    assert o.dtype == torch.bfloat16 and S.dtype == torch.float32
    err = (o.double() - o_ref).abs().max() / o_ref.abs().max()
    assert err < 3e-2, err


def test_opcheck():
    q, k, v, g, beta = inputs(n=2, T=9, dtype=torch.float32)
    cu = torch.tensor([0, 4, 9])
    torch.library.opcheck(torch.ops.seqpar.chunk_gated_delta_product.default,
                          (q, k, v, g, beta, 2, None, None, 4, cu))
    torch.library.opcheck(torch.ops.seqpar.chunk_gated_delta_product.default,
                          (q, k, v, None, beta, 2, 0.5, None, 64, None))


def test_errors_name_the_argument():
    q, k, v, g, beta = inputs(n=2, T=9)
    with pytest.raises(RuntimeError, match="'num_householder'"):
        seqpar.chunk_gated_delta_product(q, k, v, g, beta, 0)
    with pytest.raises(RuntimeError, match="'k'"):
        seqpar.chunk_gated_delta_product(q, k[:, :-1], v, g, beta, 2)
    with pytest.raises(RuntimeError, match="'beta'"):
        seqpar.chunk_gated_delta_product(q, k, v, g, beta[:, :-1], 2)
    with pytest.raises(RuntimeError, match="'g'"):
        seqpar.chunk_gated_delta_product(q, k, v, g[:, :-1], beta, 2)
    with pytest.raises(RuntimeError, match="'cp_context'"):
        seqpar.chunk_gated_delta_product(q, k, v, g, beta, 2, cp_context=object())
    with pytest.raises(RuntimeError, match="'head_first'"):
        seqpar.chunk_gated_delta_product(q, k, v, g, beta, 2, head_first=False)


@pytest.mark.skipif(fla_naive("gated_delta_product") is None,
                    reason=FLA_MISSING)
@pytest.mark.parametrize("packed", [False, True])
def test_against_fla_naive(packed):
    naive = fla_naive("gated_delta_product")
    n = 3
    q, k, v, g, beta = inputs(n=n, T=33, dtype=torch.float32)
    cu = torch.tensor([0, 10, 11, 33]) if packed else None
    h0 = torch.randn(3 if packed else 1, 2, 8, 6)
    o_fla, S_fla = naive.naive_recurrent_gated_delta_product(
        q, k, v, g, beta, scale=8 ** -0.5, cu_seqlens=cu, initial_state=h0.clone(),
        output_final_state=True, num_householder=n)
    o, S = seqpar.chunk_gated_delta_product(q, k, v, g, beta, n, initial_state=h0,
                                            output_final_state=True, cu_seqlens=cu, chunk_size=16)
    torch.testing.assert_close(o, o_fla, rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(S, S_fla, rtol=2e-5, atol=2e-5)
