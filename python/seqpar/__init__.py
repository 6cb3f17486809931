"""Python face of seqpar: loads libseqpar and exposes its ops.

    import seqpar                       # with PYTHONPATH=<repo>/python
    h, h_last = seqpar.scan(a, b, h0=None, reverse=False)
    h, h_last = seqpar.sp.scan(a_slice, b_slice)   # time split across a torch.distributed group

or, without this package, one line on the built library:

    torch.ops.load_library("build/src/libseqpar.so")
    h, h_last = torch.ops.seqpar.scan(a, b, None, False)

The library is found through $SEQPAR_LIBRARY, then seqpar/lib inside this package (after
`pip install --no-build-isolation .`), then <repo>/build/src, then the other build folders of
the checkout, then an installed lib/ next to this package.
"""
import glob
import os

import torch

from . import _fla_surface as _fla

__all__ = ["load_library", "library_path", "scan", "scan_summary", "block_scan",
           "block_scan_summary", "cpu_capability",
           "chunk_gla", "chunk_gated_delta_rule", "previous_steps", "causal_conv1d", "sp"]

_here = os.path.dirname(os.path.abspath(__file__))
_repo = os.path.dirname(os.path.dirname(_here))


def library_path():
    """Path of the libseqpar shared library this package loads."""
    env = os.environ.get("SEQPAR_LIBRARY")
    if env:
        if not os.path.isfile(env):
            raise FileNotFoundError(f"SEQPAR_LIBRARY={env!r} does not exist")
        return env
    candidates = [os.path.join(_here, "lib", "libseqpar.so")]  # pip install (pyproject.toml)
    candidates += [os.path.join(_repo, "build", "src", "libseqpar.so")]
    candidates += sorted(glob.glob(os.path.join(_repo, "build*", "src", "libseqpar.so")))
    candidates += sorted(glob.glob(os.path.join(_here, "..", "..", "lib", "libseqpar.so")))
    for path in candidates:
        if os.path.isfile(path):
            return os.path.abspath(path)
    raise FileNotFoundError(
        "libseqpar.so not found: build it (see README.md) or set SEQPAR_LIBRARY to its path")


_loaded = False


def load_library():
    """Loads libseqpar once; afterwards torch.ops.seqpar.* are available."""
    global _loaded
    if not _loaded:
        torch.ops.load_library(library_path())
        _loaded = True


def scan(a, b, h0=None, reverse=False, checkpoint_every=0, cu_seqlens=None):
    """h_t = a_t * h_{t-1} + b_t along dim 1 of (batch, time, *channels) tensors.

    Returns (h, h_last). checkpoint_every=c > 0 keeps only every c-th state for backward and
    recomputes the rest (activation memory T*D/c). cu_seqlens (int64 [N + 1], batch 1): N
    packed sequences, each from its row of h0 (N, *channels) or zeros (with reverse, from its
    own end); h_last is (N, *channels) (docs/packed_sequences.md).
    """
    load_library()
    if checkpoint_every:
        return torch.ops.seqpar.scan_checkpointed(a, b, h0, reverse, checkpoint_every, cu_seqlens)
    return torch.ops.seqpar.scan(a, b, h0, reverse, cu_seqlens)


def scan_summary(a, b, reverse=False):
    """Propagator summary (A, B) of the whole time range: h_last = A * h0 + B."""
    load_library()
    return torch.ops.seqpar.scan_summary(a, b, reverse)


def block_scan(A, b, h0=None, reverse=False, lower_triangular=False):
    """h_t = A_t h_{t-1} + b_t along dim 1, with A (batch, time, *channels, 2, 2) and b
    (batch, time, *channels, 2): a 2x2 block per channel (docs/block_scan.md).

    Returns (h, h_last) like scan: h shaped like b, h_last (batch, *channels, 2).
    lower_triangular=True takes A[..., 0, 1] as zero without reading it (second-order
    position/velocity systems). Differentiable in A, b and h0 (one fused backward pass).
    """
    load_library()
    return torch.ops.seqpar.block_scan(A, b, h0, reverse, lower_triangular)


def block_scan_summary(A, b, reverse=False, lower_triangular=False):
    """Summary (M, E) of the whole time range: h_last = M @ h0 + E, M (batch, *channels, 2, 2),
    E (batch, *channels, 2)."""
    load_library()
    return torch.ops.seqpar.block_scan_summary(A, b, reverse, lower_triangular)


def cpu_capability():
    """The CPU engine's instruction-set target ("scalar", "avx2", "avx512"; "neon", "sve" on
    aarch64), chosen at run time
    from what the CPU supports and capped by the environment variable SEQPAR_CPU_CAPABILITY."""
    load_library()
    return torch.ops.seqpar.cpu_capability()


def chunk_gla(q, k, v, g, scale=None, initial_state=None, output_final_state=False,
              state_v_first=False, cu_seqlens=None, cu_seqlens_cpu=None, *, chunk_size=64,
              **kwargs):
    """Gated linear attention, chunked; flash-linear-attention's chunk_gla (fla-core 0.6.0):
    the same arguments in the same order with the same defaults, plus seqpar's chunk_size.

    S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T and o_t = scale * S_t^T q_t per head, with
    q, k: (B, T, H, K); v: (B, T, HV, V); g: (B, T, HV, K); initial_state: (B, HV, K, V), or
    (B, HV, V, K) with state_v_first. HV is H, or a multiple of it (grouped value heads, which
    FLA's chunk_gla does not have): value head j reads q/k head j // (HV // H). A float32 g
    with bfloat16/float16 q, k, v is rounded to q's dtype. scale defaults to K ** -0.5.
    Returns (o, final_state): o (B, T, HV, V) in v's dtype; final_state float32 (float64 for
    float64 inputs) in initial_state's layout, None unless output_final_state.
    cu_seqlens (int64 [N + 1], batch 1; cu_seqlens_cpu its host copy): N packed sequences, each
    from its row of initial_state (N, HV, K, V) or zeros, final_state (N, HV, K, V)
    (docs/packed_sequences.md). Any other keyword argument is refused: RuntimeError naming it.
    """
    fn = "seqpar.chunk_gla"
    state_v_first = _fla.state_v_first_alias(fn, state_v_first, kwargs)
    _fla.refuse_unsupported(fn, {}, kwargs)
    cu_seqlens = _fla.packed_sequences(fn, cu_seqlens, cu_seqlens_cpu)
    _fla.check_flags(fn, state_v_first=state_v_first)
    (g,) = _fla.half_precision_gates(q, g)
    q, k = _fla.grouped_value_heads(fn, q, k, v)
    load_library()
    o, final_state = torch.ops.seqpar.chunk_gla(q, k, v, g, scale,
                                                _fla.state_in(initial_state, state_v_first),
                                                chunk_size, cu_seqlens)
    return o, _fla.state_out(final_state, output_final_state, state_v_first)


def chunk_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None,
                           output_final_state=False, use_qk_l2norm_in_kernel=False,
                           use_beta_sigmoid_in_kernel=False, allow_neg_eigval=False,
                           state_v_first=False, cu_seqlens=None, cu_seqlens_cpu=None,
                           chunk_indices=None, cp_context=None, *, use_gate_in_kernel=False,
                           A_log=None, dt_bias=None, chunk_size=64, **kwargs):
    """Gated DeltaNet, chunked; flash-linear-attention's chunk_gated_delta_rule (fla-core
    0.6.0): the same arguments in the same order with the same defaults; FLA's keyword
    arguments use_gate_in_kernel, A_log, dt_bias and chunk_size are keyword-only here.

    S_t = exp(g_t) (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T and o_t = scale * S_t^T q_t
    per value head, with q, k: (B, T, H, K); v: (B, T, HV, V); g, beta: (B, T, HV);
    initial_state: (B, HV, K, V), or (B, HV, V, K) with state_v_first. HV is a multiple of H
    (grouped value heads: value head j reads q/k head j // (HV // H); otherwise ValueError).
    scale defaults to K ** -0.5. As in FLA, applied before the recurrence and differentiable:
    use_qk_l2norm_in_kernel: q and k divided by sqrt(|x|^2 + 1e-6);
    use_beta_sigmoid_in_kernel: beta = sigmoid(beta), 2 * sigmoid(beta) with allow_neg_eigval
    (which needs use_beta_sigmoid_in_kernel);
    use_gate_in_kernel: g = -exp(A_log) * softplus(g + dt_bias), A_log and dt_bias (HV,), dt_bias
    optional; A_log and dt_bias are read only with use_gate_in_kernel, as in FLA.
    These run in float32 and are stored in the inputs' dtype (FLA keeps the activated gate and
    beta in float32); a float32 g or beta with bfloat16/float16 q, k, v (as transformers passes
    them) is rounded to q's dtype likewise. chunk_size: any positive value (FLA: 16, 32 or 64).
    Returns (o, final_state): o (B, T, HV, V) in v's dtype; final_state float32 (float64 for
    float64 inputs) in initial_state's layout, None unless output_final_state.
    cu_seqlens (int64 [N + 1], batch 1; cu_seqlens_cpu its host copy): N packed sequences, each
    from its row of initial_state (N, HV, K, V) or zeros, final_state (N, HV, K, V)
    (docs/packed_sequences.md). chunk_indices, which FLA derives from cu_seqlens for its
    kernels, is accepted and not read (seqpar cuts each sequence into chunks itself).
    cp_context (see seqpar.sp) and any other keyword argument are refused: RuntimeError naming
    the argument.
    """
    fn = "seqpar.chunk_gated_delta_rule"
    state_v_first = _fla.state_v_first_alias(fn, state_v_first, kwargs)
    _fla.refuse_unsupported(fn, {"cp_context": cp_context}, kwargs)
    cu_seqlens = _fla.packed_sequences(fn, cu_seqlens, cu_seqlens_cpu)
    _fla.check_flags(fn, use_qk_l2norm_in_kernel=use_qk_l2norm_in_kernel,
                     use_beta_sigmoid_in_kernel=use_beta_sigmoid_in_kernel,
                     allow_neg_eigval=allow_neg_eigval, state_v_first=state_v_first,
                     use_gate_in_kernel=use_gate_in_kernel)
    q, k, g, beta = _fla.gated_delta_rule_inputs(
        fn, q, k, v, g, beta, use_qk_l2norm_in_kernel, use_gate_in_kernel, A_log, dt_bias,
        use_beta_sigmoid_in_kernel, allow_neg_eigval)
    load_library()
    o, final_state = torch.ops.seqpar.chunk_gated_delta_rule(
        q, k, v, g, beta, scale, _fla.state_in(initial_state, state_v_first), chunk_size,
        cu_seqlens)
    return o, _fla.state_out(final_state, output_final_state, state_v_first)


def chunk_kda(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False,
              use_qk_l2norm_in_kernel=False, use_gate_in_kernel=False,
              use_beta_sigmoid_in_kernel=False, allow_neg_eigval=False, safe_gate=False,
              lower_bound=None, disable_recompute=False, return_intermediate_states=False,
              state_v_first=False, cu_seqlens=None, cu_seqlens_cpu=None, cp_context=None,
              use_graph=False, max_num_seqs=None, *, A_log=None, dt_bias=None, chunk_size=64,
              **kwargs):
    """Kimi Delta Attention, chunked; flash-linear-attention's chunk_kda (fla-core 0.6.0): the
    same arguments in the same order with the same defaults; A_log and dt_bias (which FLA reads
    from its **kwargs) and seqpar's chunk_size are keyword-only here.

    S_t = (I - beta_t k_t k_t^T) diag(exp(g_t)) S_{t-1} + beta_t k_t v_t^T and
    o_t = scale * S_t^T q_t per value head: gated DeltaNet with a decay per key channel. q, k:
    (B, T, H, K); v: (B, T, HV, V); g: (B, T, HV, K); beta: (B, T, HV); HV a multiple of H.
    The in-kernel options as in FLA: use_qk_l2norm_in_kernel; use_gate_in_kernel (g = -exp(A_log)
    softplus(g + dt_bias), A_log (HV,), dt_bias (HV * K,); with safe_gate and lower_bound,
    lower_bound * sigmoid(exp(A_log) (g + dt_bias))); use_beta_sigmoid_in_kernel and
    allow_neg_eigval; state_v_first; cu_seqlens / cu_seqlens_cpu (packed sequences).
    disable_recompute is accepted and changes nothing. chunk_size: at most 16 or a multiple of
    16. Returns (o in v's dtype, final_state float32 or None unless output_final_state).
    return_intermediate_states, use_graph, max_num_seqs, cp_context and any other keyword
    argument are refused: RuntimeError naming it. Fused chunk kernels on CPU, and on CUDA for
    the shapes they take (verified on the host emulator, not yet on a GPU; docs/matrix_state.md,
    "KDA")."""
    given = locals()  # the arguments, before any other name is bound
    options = {name: given[name] for name in _fla.KDA_OPTIONS}
    q, k, g, beta, init, cu_seqlens, state_v_first = _fla.kda_arguments(
        "seqpar.chunk_kda", q, k, v, g, beta, initial_state, kwargs, **options)
    load_library()
    o, final_state = torch.ops.seqpar.chunk_kda(q, k, v, g, beta, scale, init, chunk_size,
                                                cu_seqlens)
    return o, _fla.state_out(final_state, output_final_state, state_v_first)


def chunk_gated_delta_product(q, k, v, g, beta, num_householder, scale=None,
                              initial_state=None, output_final_state=False,
                              use_qk_l2norm_in_kernel=False, cu_seqlens=None,
                              cu_seqlens_cpu=None, cp_context=None, *, chunk_size=64, **kwargs):
    """Gated DeltaProduct, chunked; flash-linear-attention's chunk_gated_delta_product
    (fla-core 0.6.0): the same arguments in the same order with the same defaults, plus
    seqpar's keyword-only chunk_size (counted in Householder sub-steps).

    Per token t and value head: S = exp(g_t) S, then for j = 0 .. n-1 (n = num_householder)
    S = (I - beta_tj k_tj k_tj^T) S + beta_tj k_tj v_tj^T, then o_t = scale * S^T q_t, with
    q: (B, T, H, K); k: (B, T n, H, K); v: (B, T n, HV, V); beta: (B, T n, HV) (token t's
    factors at rows t n .. t n + n - 1); g: (B, T, HV) or None (no decay); HV a multiple of H
    (grouped value heads). use_qk_l2norm_in_kernel: q and k divided by sqrt(|x|^2 + 1e-6).
    Returns (o (B, T, HV, V) in v's dtype, final_state float32 (B, HV, K, V) or None unless
    output_final_state). cu_seqlens counts tokens (batch 1; docs/packed_sequences.md). Runs
    seqpar's gated DeltaNet over the T n sub-steps (docs/matrix_state.md, "DeltaProduct").
    cp_context and any other keyword argument are refused: RuntimeError naming it."""
    fn = "seqpar.chunk_gated_delta_product"
    q, k, g, beta, cu_seqlens = _fla.delta_product_inputs(
        fn, q, k, v, g, beta, use_qk_l2norm_in_kernel, cu_seqlens, cu_seqlens_cpu, cp_context,
        kwargs)
    load_library()
    o, final_state = torch.ops.seqpar.chunk_gated_delta_product(
        q, k, v, g, beta, num_householder, scale, initial_state, chunk_size, cu_seqlens)
    return o, _fla.state_out(final_state, output_final_state, False)


def previous_steps(x, width, initial=None, cu_seqlens=None):
    """The `width` steps before x and the `width` steps ending the sequence after x.

    x: (batch, time, channels). Returns (before, last), each (batch, width, channels): before is
    `initial` (the tail of an earlier piece of the sequence; zeros when None) and last the final
    `width` rows of [before, x]. With seqpar.sp.previous_steps the same runs across ranks, for
    short causal convolutions over a sequence split along time. cu_seqlens (int64 [N + 1],
    batch 1): N packed sequences, each with its own windows, initial/before/last (N, width,
    channels).
    """
    load_library()
    return torch.ops.seqpar.previous_steps(x, width, initial, cu_seqlens)


def _causal_conv1d(x, weight, bias, activation, initial_state, output_final_state, steps,
                   conv_cu=None, sequences=None):
    """The convolution over [before, x], `before` from steps(x, W - 1, initial_state): the
    one-process previous_steps or seqpar.sp's (shared by both causal_conv1d functions). With
    packed sequences, conv_cu holds the bounds of x's segments (one `before` row each) and
    sequences the number of final states."""
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"seqpar.causal_conv1d: 'activation' must be None, 'silu' or 'swish', "
                         f"got {activation!r}")
    if x.dim() != 3 or weight.dim() != 2:
        raise ValueError(f"seqpar.causal_conv1d: 'x' must be (batch, time, dim) and 'weight' "
                         f"(dim, width), got {tuple(x.shape)} and {tuple(weight.shape)}")
    width = weight.shape[1]
    if width > 1:
        before, last = steps(x, width - 1, initial_state)
    else:
        rows = x.shape[0] if conv_cu is None else conv_cu.shape[0] - 1
        before = x.new_zeros(rows, 0, x.shape[2])
        last = x.new_zeros(rows if sequences is None else sequences, 0, x.shape[2])
    load_library()
    y = torch.ops.seqpar.causal_conv1d(x, before, weight, bias, activation is not None, conv_cu)
    return y, (last if output_final_state else None)


def causal_conv1d(x, weight, bias=None, activation=None, initial_state=None,
                  output_final_state=False, cu_seqlens=None):
    """Depthwise causal convolution over time (flash-linear-attention's ShortConvolution):
    y[:, t, d] = act(bias[d] + sum_j weight[d, j] * x[:, t - W + 1 + j, d]), W = width.

    x: (batch, time, dim); weight: (dim, W); bias: (dim,) or None; activation None or "silu".
    initial_state: (batch, W - 1, dim), the inputs before x (zeros when None). Returns
    (y, final_state), final_state the last W - 1 inputs (None unless output_final_state), so a
    sequence fed in pieces equals the whole. seqpar.sp.causal_conv1d runs it across ranks.
    cu_seqlens (int64 [N + 1], batch 1): N packed sequences; no window reaches across a
    sequence start, initial_state and final_state are (N, W - 1, dim).
    """
    return _causal_conv1d(x, weight, bias, activation, initial_state, output_final_state,
                          lambda x, width, initial: previous_steps(x, width, initial, cu_seqlens),
                          cu_seqlens)


# seqpar.sp after `import seqpar`, as torch.distributed is after `import torch`. It costs no
# import time: torch itself already imports torch.distributed, and seqpar.sp loads nothing more
# until a function is called.
from . import sp  # noqa: E402
