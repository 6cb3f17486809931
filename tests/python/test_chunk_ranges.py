"""The fused CPU chunk kernels with fewer (batch, head) pairs than threads, where each pair's
chunks are cut into ranges run in parallel (kernels/cpu/chunk_ranges.h: the ranges' affine maps,
the states entering them in order, then every range from its entering state; backward through
the adjoint maps). B * H = 1 and 2 with 2, 3 and 4 threads (ranges = threads // (B * H)), T not
a multiple of the chunk and about 5000 steps (80 chunks), decays near 0 and near 1, with and
without initial_state, every gradient, and packed sequences whose boundaries fall inside and on
the edges of ranges; against the float64 per-step recurrence (reference.py)."""
import functools

import pytest
import torch
from torch.autograd import gradcheck

from reference import matrix_state_reference
from test_matrix_state import make_inputs, rel_err, run
from test_packed_sequences import cu_of, matrix_inputs, matrix_per_sequence, run_matrix

MODELS = ["gla", "gated_delta", "kda"]
THREADS = [2, 3, 4]


@pytest.fixture
def threads():
    """Restores torch's thread count after a test that changes it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def loss_weights(o, S, seed=11):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(o.shape, generator=gen, dtype=torch.float64), \
        torch.randn(S.shape, generator=gen, dtype=torch.float64)


@functools.lru_cache(maxsize=None)
def reference_case(model, H, T, regime, h0):
    """Inputs (float64 leaves), and the reference's o, S and gradients of
    sum(o * wo) + sum(S * wS) with respect to every input."""
    xs = make_inputs(model, 1, T, H, 8, 4, regime="near1" if regime == "slow" else regime,
                     seed=T + H, h0=h0)
    if regime == "slow" and model != "gla":
        # decays near 1 and beta near 0: the state entering a range still matters after it
        # (with beta near 1 the delta rule's projections forget it within a range)
        xs = (*xs[:4], 1 - xs[4], xs[5])
    leaves = [None if x is None else x.clone().requires_grad_() for x in xs]
    o, S = matrix_state_reference(*leaves[:5], None, leaves[5])
    wo, wS = loss_weights(o, S)
    present = [x for x in leaves if x is not None]
    grads = torch.autograd.grad((o * wo).sum() + (S * wS).sum(), present)
    return xs, o.detach(), S.detach(), wo, wS, grads


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("H", [1, 2])
@pytest.mark.parametrize("regime,h0", [
    pytest.param("mid", True, marks=pytest.mark.exhaustive),
    pytest.param("mid", False, marks=pytest.mark.exhaustive),
    pytest.param("near0", True, marks=pytest.mark.exhaustive),
    ("near1", True), ("slow", False)], ids=str)
def test_ranges_match_reference(threads, model, H, regime, h0):
    """float64, T = 5000 (chunk 64: 78 full chunks and one of 8 steps), values and every gradient
    within 1e-10 of the per-step reference, for 2, 3 and 4 threads. Only where decays are near 1
    (near1 for GLA, slow for both) does a range's map M stay far from 0 over its ~1250 steps;
    test_ranges_gradcheck checks M on short ranges in every regime of its inputs."""
    xs, o_ref, S_ref, wo, wS, g_ref = reference_case(model, H, 5000, regime, h0)
    for n in THREADS:
        torch.set_num_threads(n)
        leaves = [None if x is None else x.clone().requires_grad_() for x in xs]
        o, S = run(model, *leaves, chunk_size=64)
        assert rel_err(o, o_ref) < 1e-10, n
        assert rel_err(S, S_ref) < 1e-10, n
        present = [x for x in leaves if x is not None]
        grads = torch.autograd.grad((o * wo).sum() + (S * wS).sum(), present)
        for name, got, want in zip("qkvgbs", grads, g_ref):
            assert rel_err(got, want) < 1e-10, (n, name)


@pytest.mark.parametrize("model", MODELS)
def test_ranges_float32(threads, model):
    """float32 (computed in float32, the other instantiation of the kernels) within 5e-6."""
    xs, o_ref, S_ref, wo, wS, g_ref = reference_case(model, 1, 5000, "mid", True)
    for n in THREADS:
        torch.set_num_threads(n)
        leaves = [None if x is None else x.float().requires_grad_() for x in xs]
        o, S = run(model, *leaves, chunk_size=64)
        assert rel_err(o, o_ref) < 5e-6 and rel_err(S, S_ref) < 5e-6, n
        present = [x for x in leaves if x is not None]
        grads = torch.autograd.grad((o * wo.float()).sum() + (S * wS.float()).sum(), present)
        for name, got, want in zip("qkvgbs", grads, g_ref):
            assert rel_err(got, want) < 5e-5, (n, name)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("T,chunk", [(37, 4), (9, 4), (3, 4)], ids=str)
def test_ranges_gradcheck(threads, model, T, chunk):
    """Few chunks, so ranges of one and two chunks (and fewer chunks than threads)."""
    torch.set_num_threads(4)
    q, k, v, g, beta, s0 = make_inputs(model, 1, T, 1, 3, 2)
    args = [x.requires_grad_() for x in (q, k, v, g, s0)]
    if model == "gla":
        f = lambda q, k, v, g, s0: torch.ops.seqpar.chunk_gla(q, k, v, g, 0.7, s0, chunk)  # noqa
    else:
        args.insert(4, beta.requires_grad_())
        op = getattr(torch.ops.seqpar, "chunk_kda" if model == "kda" else "chunk_gated_delta_rule")
        f = lambda q, k, v, g, b, s0: op(q, k, v, g, b, 0.7, s0, chunk)  # noqa: E731
    assert gradcheck(f, tuple(args))


# Empty sequences first, inside and last; one shorter than a chunk; boundaries on and off chunk
# edges; with 2-4 ranges of about 20 chunks some ranges start at a sequence start, some hold
# several sequences, some lie inside one.
# The once-per-target runs (marker "exhaustive" deselected) keep the first.
PACKED = [[0, 700, 1, 0, 1500, 63, 64, 1900, 0],
          pytest.param([4999], marks=pytest.mark.exhaustive),
          pytest.param([2500, 2500], marks=pytest.mark.exhaustive)]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("lengths", PACKED, ids=lambda x: f"{len(x)}seqs")
@pytest.mark.parametrize("H", [1, 2])
@pytest.mark.parametrize("h0", [True, pytest.param(False, marks=pytest.mark.exhaustive)])
def test_ranges_packed(threads, model, lengths, H, h0):
    q, k, v, g, beta, s0 = matrix_inputs(model, lengths, H=H, K=8, V=4, h0=h0)
    cu = cu_of(lengths)
    inputs = [x for x in (q, k, v, g, beta, s0) if x is not None]
    refs = [x.clone().requires_grad_() for x in inputs]
    it = iter(refs)
    ro, rf = matrix_per_sequence(*[next(it) if x is not None else None
                                   for x in (q, k, v, g, beta, s0)], cu)
    wo, wf = loss_weights(ro, rf)
    want = torch.autograd.grad((ro * wo).sum() + (rf * wf).sum(), refs)
    for n in THREADS:
        torch.set_num_threads(n)
        leaves = [x.clone().requires_grad_() for x in inputs]
        it = iter(leaves)
        o, f = run_matrix(model, *[next(it) if x is not None else None
                                   for x in (q, k, v, g, beta, s0)], cu, chunk_size=64)
        assert rel_err(o, ro.detach()) < 1e-10 and rel_err(f, rf.detach()) < 1e-10, n
        got = torch.autograd.grad((o * wo).sum() + (f * wf).sum(), leaves)
        for i, (x, y) in enumerate(zip(got, want)):
            assert rel_err(x, y) < 1e-10, (n, i)


@pytest.mark.parametrize("model", MODELS)
def test_ranges_packed_gradcheck(threads, model):
    """Chunks (of 4 steps) per sequence 1, 0, 6, 2, 0; 3 ranges of 3 chunks: the first holds two
    sequence starts, the middle one lies inside the third sequence (its map M matters forwards
    and backwards), the last holds that sequence's end and the fourth sequence."""
    torch.set_num_threads(3)
    lengths = [3, 0, 21, 5, 0]
    q, k, v, g, beta, s0 = matrix_inputs(model, lengths, H=1, K=3, V=2)
    # slow decays and small beta, so that the middle range's M (12 steps) is far above
    # gradcheck's tolerance
    g = g * 0.05
    beta = None if beta is None else beta * 0.3
    cu = cu_of(lengths)
    xs = [x.requires_grad_() for x in (q, k, v, g, beta, s0) if x is not None]

    def fn(*xs):
        it = iter(xs)
        args = [next(it) if x is not None else None for x in (q, k, v, g, beta, s0)]
        return run_matrix(model, *args, cu, chunk_size=4)
    assert gradcheck(fn, xs)
