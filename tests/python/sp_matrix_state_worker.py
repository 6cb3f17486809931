"""One rank of the sequence-parallel matrix-state tests; run under torchrun by
test_sp_matrix_state.py.

Every rank builds the same full problem from a fixed seed, takes its slice (even, uneven and
with empty slices; lengths not multiples of the chunk), and checks seqpar.sp.chunk_gla and
seqpar.sp.chunk_gated_delta_rule, outputs, the final state and the gradients of every input,
against one process running the local op over the whole sequence. Then it checks that two runs
give bitwise-equal results, and the flash-linear-attention call surface (grouped value heads,
the in-kernel options) across ranks. Any failure raises and the rank exits non-zero.
"""
import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "python"))
import seqpar  # noqa: E402
import seqpar.sp  # noqa: E402
from sp_common import slice_lengths  # noqa: E402


def problem(model, total, dtype):
    gen = torch.Generator().manual_seed(4321)
    B, H, K, V = 2, 2, 4, 3
    q = torch.randn(B, total, H, K, generator=gen, dtype=torch.float64)
    k = F.normalize(torch.randn(B, total, H, K, generator=gen, dtype=torch.float64), dim=-1)
    v = torch.randn(B, total, H, V, generator=gen, dtype=torch.float64)
    g = -torch.rand(B, total, H, K if model == "gla" else 1, generator=gen, dtype=torch.float64)
    if model != "gla":
        g = g.squeeze(-1)
    beta = torch.rand(B, total, H, generator=gen, dtype=torch.float64)
    h0 = torch.randn(B, H, K, V, generator=gen, dtype=torch.float64)
    wo = torch.randn(B, total, H, V, generator=gen, dtype=torch.float64)
    wS = torch.randn(B, H, K, V, generator=gen, dtype=torch.float64)
    cast = lambda x: x.to(dtype)  # noqa: E731
    inputs = [cast(q), cast(k), cast(v), cast(g)] + ([cast(beta)] if model != "gla" else [])
    return inputs, h0.to(torch.float64 if dtype == torch.float64 else torch.float32), wo, wS


def run(model, inputs, h0, chunk, group=None, algo="auto"):
    if group is None:
        fn = seqpar.chunk_gla if model == "gla" else seqpar.chunk_gated_delta_rule
        return fn(*inputs, initial_state=h0, output_final_state=True, chunk_size=chunk)
    fn = seqpar.sp.chunk_gla if model == "gla" else seqpar.sp.chunk_gated_delta_rule
    return fn(*inputs, initial_state=h0, output_final_state=True, chunk_size=chunk, group=group,
              algo=algo)


def check_case(model, split, chunk, dtype, tol, algo="auto", final_in_loss=True,
               via="environment"):
    """final_in_loss=False: the loss reads the outputs only (an empty slice's backward must
    still take part in the exchange's collectives). via: algo chosen by SEQPAR_SP_ALGO
    ("environment") or by the functions' algo= argument ("argument")."""
    os.environ.pop("SEQPAR_SP_ALGO", None)
    if via == "environment":
        os.environ["SEQPAR_SP_ALGO"] = algo
    arg_algo = algo if via == "argument" else "auto"
    P, r = dist.get_world_size(), dist.get_rank()
    lengths = slice_lengths(split, P)
    start, total = sum(lengths[:r]), sum(lengths)
    inputs, h0, wo, wS = problem(model, total, dtype)

    # One process, whole sequence.
    full = [x.clone().requires_grad_() for x in inputs]
    h0_full = h0.clone().requires_grad_()
    o_ref, S_ref = run(model, full, h0_full, chunk)
    if not final_in_loss:
        wS = torch.zeros_like(wS)
    loss_ref = (o_ref.double() * wo).sum() + (S_ref.double() * wS).sum() * P
    grads_ref = torch.autograd.grad(loss_ref, full + [h0_full])

    # This rank's slice. The global loss is the sum of the ranks' losses, each holding the
    # final-state term once, so the reference above counts it P times.
    mine = [x[:, start:start + lengths[r]].clone().requires_grad_() for x in inputs]
    h0_mine = h0.clone().requires_grad_()
    o, S = run(model, mine, h0_mine, chunk, group=dist.group.WORLD, algo=arg_algo)
    loss = (o.double() * wo[:, start:start + lengths[r]]).sum()
    if final_in_loss:
        loss = loss + (S.double() * wS).sum()
    grads = torch.autograd.grad(loss, mine + [h0_mine], allow_unused=True)

    def close(name, got, want):
        if got is None:  # not reached by the loss: h0 off rank 0
            got = torch.zeros_like(want)
        err = (got.double() - want.double()).abs().max().item() if got.numel() else 0.0
        scale = max(want.double().abs().max().item() if want.numel() else 0.0, 1.0)
        assert err <= tol * scale, (f"rank {r} P={P} {model} {split} chunk={chunk} {dtype}: "
                                    f"({algo}) {name} differs by {err:.3g} (scale {scale:.3g})")

    close("o", o, o_ref[:, start:start + lengths[r]])
    close("final_state", S, S_ref)
    names = ["q", "k", "v", "g"] + (["beta"] if model != "gla" else [])
    for name, got, want in zip(names, grads, grads_ref):
        close("grad " + name, got, want[:, start:start + lengths[r]])
    want_h0 = grads_ref[-1] if r == 0 else torch.zeros_like(grads_ref[-1])
    close("grad initial_state", grads[-1], want_h0)

    # Run to run: bitwise the same.
    o2, S2 = run(model, [x.detach() for x in mine], h0, chunk, group=dist.group.WORLD,
                 algo=arg_algo)
    assert torch.equal(o2, o.detach()) and torch.equal(S2, S.detach()), f"rank {r}: not reproducible"


def check_previous_steps(split, width, dtype, algo="auto"):
    """seqpar.sp.previous_steps feeding a depthwise causal convolution of width + 1 taps: the
    convolution of each slice over [before, x] equals the convolution of the whole sequence,
    in value and gradient (x, initial, weight)."""
    P, r = dist.get_world_size(), dist.get_rank()
    lengths = slice_lengths(split, P)
    start, total = sum(lengths[:r]), sum(lengths)
    gen = torch.Generator().manual_seed(99)
    B, C = 2, 5
    x = torch.randn(B, total, C, generator=gen, dtype=torch.float64).to(dtype)
    init = torch.randn(B, width, C, generator=gen, dtype=torch.float64).to(dtype)
    weight = torch.randn(C, 1, width + 1, generator=gen, dtype=torch.float64).to(dtype)
    wy = torch.randn(B, C, total, generator=gen, dtype=torch.float64)

    def conv(seq, w):  # seq (B, n + width, C) -> (B, C, n)
        # conv1d refuses an empty output: an empty slice convolves one zero step and keeps
        # none, so that its graph still reaches previous_steps' collective backward.
        n = seq.shape[1] - width
        if n == 0:
            seq = torch.cat([seq, seq.new_zeros(B, 1, C)], 1)
        return F.conv1d(seq.transpose(1, 2), w, groups=C)[:, :, :n]

    full, init_full, w_full = (t.clone().requires_grad_() for t in (x, init, weight))
    y_ref = conv(torch.cat([init_full, full], 1), w_full)
    # The weight is replicated: each rank's gradient of it is its own slice's share.
    grads_ref = torch.autograd.grad((y_ref.double() * wy).sum(), [full, init_full, w_full])

    mine, init_mine, w_mine = (t.clone().requires_grad_()
                               for t in (x[:, start:start + lengths[r]], init, weight))
    before, last = seqpar.sp.previous_steps(mine, width, init_mine, algo=algo)
    y = conv(torch.cat([before, mine], 1), w_mine)
    loss = (y.double() * wy[:, :, start:start + lengths[r]]).sum()
    g_x, g_init, g_w = torch.autograd.grad(loss, [mine, init_mine, w_mine], allow_unused=True)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    where = f"rank {r} P={P} previous_steps {split} width={width} {dtype} {algo}"
    assert torch.equal(last, torch.cat([init, x], 1)[:, total:]), where + ": last"
    assert torch.allclose(y, y_ref[:, :, start:start + lengths[r]], atol=tol), where + ": conv"
    assert torch.allclose(g_x, grads_ref[0][:, start:start + lengths[r]], atol=tol), where + ": grad x"
    want_init = grads_ref[1] if r == 0 else torch.zeros_like(grads_ref[1])
    assert torch.allclose(g_init if g_init is not None else torch.zeros_like(init), want_init,
                          atol=tol), where + ": grad initial"
    g_w_sum = g_w.clone()
    dist.all_reduce(g_w_sum)
    # The weight's gradient sums one product per step: rounding grows with the step count.
    assert torch.allclose(g_w_sum, grads_ref[2], atol=tol * max(1, total)), where + ": grad weight"


def check_causal_conv1d(split, width, algo="auto"):
    """seqpar.sp.causal_conv1d (bias, SiLU, initial and final state) against seqpar's one-process
    causal_conv1d over the whole sequence, values and gradients."""
    P, r = dist.get_world_size(), dist.get_rank()
    lengths = slice_lengths(split, P)
    start, total = sum(lengths[:r]), sum(lengths)
    gen = torch.Generator().manual_seed(7)
    B, D = 2, 3
    x = torch.randn(B, total, D, generator=gen, dtype=torch.float64)
    w = torch.randn(D, width, generator=gen, dtype=torch.float64)
    bias = torch.randn(D, generator=gen, dtype=torch.float64)
    init = torch.randn(B, width - 1, D, generator=gen, dtype=torch.float64)
    wy = torch.randn(B, total, D, generator=gen, dtype=torch.float64)
    wf = torch.randn(B, width - 1, D, generator=gen, dtype=torch.float64)
    full = [t.clone().requires_grad_() for t in (x, w, bias, init)]
    y_ref, f_ref = seqpar.causal_conv1d(full[0], full[1], full[2], "silu", full[3], True)
    ref = torch.autograd.grad((y_ref * wy).sum() + P * (f_ref * wf).sum(), full)
    mine = [t.clone().requires_grad_() for t in (x[:, start:start + lengths[r]], w, bias, init)]
    y, f = seqpar.sp.causal_conv1d(mine[0], mine[1], mine[2], "silu", mine[3], True, algo=algo)
    got = torch.autograd.grad((y * wy[:, start:start + lengths[r]]).sum() + (f * wf).sum(), mine,
                              allow_unused=True)
    where = f"rank {r} P={P} causal_conv1d {split} width={width} {algo}"
    assert torch.allclose(y, y_ref[:, start:start + lengths[r]], atol=1e-12), where + ": y"
    assert torch.equal(f, f_ref), where + ": final state"
    assert torch.allclose(got[0], ref[0][:, start:start + lengths[r]], atol=1e-12), where + ": grad x"
    for i, name in ((1, "weight"), (2, "bias")):  # replicated: the ranks' shares sum to it
        total_grad = got[i].clone()
        dist.all_reduce(total_grad)
        assert torch.allclose(total_grad, ref[i], atol=1e-10), where + ": grad " + name
    want_init = ref[3] if r == 0 else torch.zeros_like(ref[3])
    got_init = got[3] if got[3] is not None else torch.zeros_like(ref[3])
    assert torch.allclose(got_init, want_init, atol=1e-12), where + ": grad initial_state"


def check_fla_surface(model, split):
    """The flash-linear-attention call surface across ranks: grouped value heads (HV = 2H) and,
    for gated DeltaNet, the in-kernel L2 norm, gate (A_log, dt_bias) and beta sigmoid with
    allow_neg_eigval; for GLA the V-first state layout. Against the one-process function with
    the same arguments; A_log and dt_bias are replicated, so their gradients sum over ranks."""
    P, r = dist.get_world_size(), dist.get_rank()
    lengths = slice_lengths(split, P)
    start, total = sum(lengths[:r]), sum(lengths)
    gen = torch.Generator().manual_seed(2024)
    rn = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    B, H, HV, K, V = 2, 2, 4, 4, 3
    tensors = [rn(B, total, H, K), rn(B, total, H, K), rn(B, total, HV, V)]
    if model == "gla":
        tensors.append(-torch.rand(B, total, HV, K, generator=gen, dtype=torch.float64))
        replicated = [rn(B, HV, V, K)]  # initial_state, V-first
        options = {"state_v_first": True}
    else:
        tensors += [rn(B, total, HV), rn(B, total, HV)]  # raw gate inputs, beta logits
        replicated = [rn(B, HV, K, V), rn(HV) - 1, rn(HV)]  # initial_state, A_log, dt_bias
        options = {"use_qk_l2norm_in_kernel": True, "use_gate_in_kernel": True,
                   "use_beta_sigmoid_in_kernel": True, "allow_neg_eigval": True}
    wo = rn(B, total, HV, V)
    wS = rn(*replicated[0].shape)

    def run_fla(fn, xs, reps, **kw):
        named = dict(zip(["initial_state", "A_log", "dt_bias"], reps))
        return fn(*xs, **named, output_final_state=True, chunk_size=4, **options, **kw)

    fn = seqpar.chunk_gla if model == "gla" else seqpar.chunk_gated_delta_rule
    sp_fn = seqpar.sp.chunk_gla if model == "gla" else seqpar.sp.chunk_gated_delta_rule
    full = [x.clone().requires_grad_() for x in tensors + replicated]
    o_ref, S_ref = run_fla(fn, full[:len(tensors)], full[len(tensors):])
    ref = torch.autograd.grad((o_ref * wo).sum() + P * (S_ref * wS).sum(), full)

    sl = slice(start, start + lengths[r])
    mine = [x[:, sl].clone().requires_grad_() for x in tensors]
    mine += [x.clone().requires_grad_() for x in replicated]
    o, S = run_fla(sp_fn, mine[:len(tensors)], mine[len(tensors):], group=dist.group.WORLD)
    got = torch.autograd.grad((o * wo[:, sl]).sum() + (S * wS).sum(), mine, allow_unused=True)
    where = f"rank {r} P={P} FLA surface {model} {split}"
    assert torch.allclose(o, o_ref[:, sl], atol=1e-10), where + ": o"
    assert torch.allclose(S, S_ref, atol=1e-10), where + ": final_state"
    names = ["q", "k", "v", "g", "beta"][:len(tensors)] + ["initial_state", "A_log", "dt_bias"]
    for i, name in enumerate(names[:len(mine)]):
        grad = got[i] if got[i] is not None else torch.zeros_like(mine[i])
        want = ref[i]
        if i < len(tensors):
            want = want[:, sl]
        elif name == "initial_state":
            want = want if r == 0 else torch.zeros_like(want)
        else:
            grad = grad.clone()
            dist.all_reduce(grad)
        assert torch.allclose(grad, want, atol=1e-9), where + ": grad " + name


def check_delta_product(split, packed):
    """seqpar.sp.chunk_gated_delta_product (3 Householder factors per token, grouped value
    heads, the in-kernel L2 norm) against the one-process function over the whole sequence:
    outputs, final states and every gradient; packed: sequences crossing ranks."""
    P, r = dist.get_world_size(), dist.get_rank()
    lengths = slice_lengths(split, P)
    start, total, n = sum(lengths[:r]), sum(lengths), 3
    gen = torch.Generator().manual_seed(77)
    rn = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    B, H, HV, K, V = 1, 1, 2, 4, 3
    tensors = [rn(B, total, H, K), rn(B, total * n, H, K), rn(B, total * n, HV, V),
               -torch.rand(B, total, HV, generator=gen, dtype=torch.float64),
               torch.rand(B, total * n, HV, generator=gen, dtype=torch.float64)]
    per_token = [1, n, n, 1, n]
    cu = None
    if packed:
        cut = sorted({0, total, total // 3, total // 3, (2 * total) // 3 + 1, total - 1})
        cu = torch.tensor([c for c in cut if 0 <= c <= total] if total else [0, 0])
    N = 1 if cu is None else len(cu) - 1
    h0 = rn(N, HV, K, V)
    wo, wS = rn(B, total, HV, V), rn(N, HV, K, V)
    kw = dict(output_final_state=True, use_qk_l2norm_in_kernel=True, chunk_size=4,
              cu_seqlens=cu)
    full = [x.clone().requires_grad_() for x in tensors + [h0]]
    o_ref, S_ref = seqpar.chunk_gated_delta_product(*full[:5], n, initial_state=full[5], **kw)
    ref = torch.autograd.grad((o_ref * wo).sum() + P * (S_ref * wS).sum(), full)
    mine = [x[:, start * m:(start + lengths[r]) * m].clone().requires_grad_()
            for x, m in zip(tensors, per_token)] + [h0.clone().requires_grad_()]
    o, S = seqpar.sp.chunk_gated_delta_product(*mine[:5], n, initial_state=mine[5],
                                               group=dist.group.WORLD, **kw)
    got = torch.autograd.grad((o * wo[:, start:start + lengths[r]]).sum() + (S * wS).sum(), mine,
                              allow_unused=True)
    spans = [slice(start * m, (start + lengths[r]) * m) for m in per_token]
    assert_matches_whole(f"rank {r} P={P} delta product {split} packed={packed}", packed,
                         (o, S, got), (o_ref[:, start:start + lengths[r]], S_ref, ref), spans,
                         mine)


def assert_matches_whole(where, packed, results, whole, spans, mine):
    """The sp results (o, final state, gradients of q, k, v, g, beta, initial_state) of this
    rank against the one-process ones (o already sliced): each input's gradient is its span of
    the whole's; the initial states are read on rank 0 (one sequence) or on every rank when
    packed (their gradients then sum over the ranks)."""
    (o, S, got), (o_ref, S_ref, ref) = results, whole
    assert torch.allclose(o, o_ref, atol=1e-10), where + ": o"
    assert torch.allclose(S, S_ref, atol=1e-10), where + ": final_state"
    for i, (name, span) in enumerate(zip(["q", "k", "v", "g", "beta"], spans)):
        grad = got[i] if got[i] is not None else torch.zeros_like(mine[i])
        assert torch.allclose(grad, ref[i][:, span], atol=1e-9), where + ": grad " + name
    grad = got[5] if got[5] is not None else torch.zeros_like(mine[5])
    if packed:
        grad = grad.clone()
        dist.all_reduce(grad)
    elif dist.get_rank() != 0:
        assert torch.all(grad == 0), where + ": grad initial_state off rank 0"
        return
    assert torch.allclose(grad, ref[5], atol=1e-9), where + ": grad initial_state"


def check_kda(split, packed):
    """seqpar.sp.chunk_kda (grouped value heads, decays per key channel from e^-20 to near 1)
    against the one-process function over the whole sequence: outputs, final states and every
    gradient; packed: sequences crossing ranks."""
    P, r = dist.get_world_size(), dist.get_rank()
    lengths = slice_lengths(split, P)
    start, total = sum(lengths[:r]), sum(lengths)
    gen = torch.Generator().manual_seed(99)
    rn = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    B, H, HV, K, V = 1, 1, 2, 4, 3
    tensors = [rn(B, total, H, K), F.normalize(rn(B, total, H, K), dim=-1), rn(B, total, HV, V),
               -torch.exp(torch.rand(B, total, HV, K, generator=gen, dtype=torch.float64) * 12 - 9),
               torch.rand(B, total, HV, generator=gen, dtype=torch.float64)]
    cu = torch.tensor(sorted({0, total // 3, (2 * total) // 3 + 1, total})) if packed else None
    N = 1 if cu is None else len(cu) - 1
    h0, wS = rn(N, HV, K, V), rn(N, HV, K, V)
    wo = rn(B, total, HV, V)
    kw = dict(output_final_state=True, chunk_size=16, cu_seqlens=cu)
    full = [x.clone().requires_grad_() for x in tensors + [h0]]
    o_ref, S_ref = seqpar.chunk_kda(*full[:5], initial_state=full[5], **kw)
    ref = torch.autograd.grad((o_ref * wo).sum() + P * (S_ref * wS).sum(), full)
    sl = slice(start, start + lengths[r])
    mine = [x[:, sl].clone().requires_grad_() for x in tensors] + [h0.clone().requires_grad_()]
    o, S = seqpar.sp.chunk_kda(*mine[:5], initial_state=mine[5], group=dist.group.WORLD, **kw)
    got = torch.autograd.grad((o * wo[:, sl]).sum() + (S * wS).sum(), mine, allow_unused=True)
    assert_matches_whole(f"rank {r} P={P} kda {split} packed={packed}", packed,
                         (o, S, got), (o_ref[:, sl], S_ref, ref), [sl] * 5, mine)


def main():
    dist.init_process_group("gloo")
    cases = 0
    for model in ("gla", "gated_delta"):
        for split in ("even", "uneven", "empty"):
            for chunk in (4, 16):
                check_case(model, split, chunk, torch.float64, 1e-10)
                cases += 1
        check_case(model, "uneven", 16, torch.float32, 2e-4)
        for algo in ("tree", "allgather", "ring"):
            check_case(model, "empty", 16, torch.float64, 1e-10, algo)
        check_case(model, "empty", 4, torch.float64, 1e-10, final_in_loss=False)
        for algo in ("tree", "allgather", "ring", "blelloch"):
            check_case(model, "uneven", 4, torch.float64, 1e-10, algo, via="argument")
        cases += 9
    for split in ("even", "uneven", "empty"):
        for width in (1, 3):
            check_previous_steps(split, width, torch.float64)
            cases += 1
    check_previous_steps("empty", 3, torch.float32)
    check_previous_steps("empty", 3, torch.float64, algo="allgather")
    cases += 2
    for split in ("uneven", "empty"):
        check_causal_conv1d(split, 4)
        cases += 1
    check_causal_conv1d("empty", 4, algo="ring")
    cases += 1
    for model in ("gla", "gated_delta"):
        for split in ("uneven", "empty"):
            check_fla_surface(model, split)
            cases += 1
    for split in ("uneven", "empty"):
        for packed in (False, True):
            check_delta_product(split, packed)
            check_kda(split, packed)
            cases += 2
    print(f"rank {dist.get_rank()}: sp matrix-state checks passed on {dist.get_world_size()} "
          f"ranks ({cases} cases)", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
