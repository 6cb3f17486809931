"""Sequence-parallel ops over a torch.distributed group: each rank passes its own time slice.

    import seqpar.sp
    o, final_state = seqpar.sp.chunk_gla(q, k, v, g, output_final_state=True, group=None)

initial_state is read on rank 0 (ignored on the others); final_state is the global final state,
the same on every rank; gradients of the replicated final state are summed over ranks
(torch.distributed's functional-collective convention). group=None means the world group.

algo names how the ranks' summaries are exchanged: "auto" (the cost model's choice, or the
SEQPAR_SP_ALGO environment variable when set), "tree", "exscan" (MPI groups only), "allgather",
"ring" or "blelloch" (docs/sequence_parallel.md, "Choosing the exchange"). Every rank of the
group must pass the same one.
"""
import torch

from . import _causal_conv1d, load_library
from . import _fla_surface as _fla

__all__ = ["scan", "chunk_gla", "chunk_gated_delta_rule", "chunk_kda", "chunk_gated_delta_product",
           "previous_steps", "causal_conv1d", "packed_bounds"]


def _group_name(group):
    import torch.distributed as dist
    return (group if group is not None else dist.group.WORLD).group_name


def scan(a, b, h0=None, reverse=False, group=None, algo="auto", cu_seqlens=None):
    """h_t = a_t * h_{t-1} + b_t with time split across the group's ranks (seqpar.scan's
    arguments). Returns (h of this slice, the global final state). cu_seqlens (packed
    sequences: the whole pack's bounds, the same on every rank; forward scans): h0 (N,
    *channels) the same on every rank, the N final states on every rank."""
    load_library()
    return torch.ops.seqpar.sp_scan(a, b, h0, reverse, _group_name(group), algo, cu_seqlens)


def block_scan(A, b, h0=None, reverse=False, group=None, algo="auto", lower_triangular=False):
    """seqpar.block_scan with time split across the group's ranks: each rank passes its slice of
    A (batch, time, *channels, 2, 2) and b (batch, time, *channels, 2); h0 is read on the rank
    the scan enters first. Returns (h of this slice, the global final state)."""
    load_library()
    return torch.ops.seqpar.sp_block_scan(A, b, h0, reverse, _group_name(group), algo,
                                          lower_triangular)


def chunk_gla(q, k, v, g, scale=None, initial_state=None, output_final_state=False,
              state_v_first=False, cu_seqlens=None, cu_seqlens_cpu=None, *, chunk_size=64,
              group=None, algo="auto", **kwargs):
    """seqpar.chunk_gla with the sequence split along time across the group's ranks: the same
    arguments (flash-linear-attention's chunk_gla surface, grouped value heads included) plus
    group and algo. Every rank must call it, with the same head counts and options."""
    fn = "seqpar.sp.chunk_gla"
    state_v_first = _fla.state_v_first_alias(fn, state_v_first, kwargs)
    _fla.refuse_unsupported(fn, {}, kwargs)
    cu_seqlens = _fla.packed_sequences(fn, cu_seqlens, cu_seqlens_cpu)
    _fla.check_flags(fn, state_v_first=state_v_first)
    (g,) = _fla.half_precision_gates(q, g)
    q, k = _fla.grouped_value_heads(fn, q, k, v)
    load_library()
    o, final_state = torch.ops.seqpar.sp_chunk_gla(q, k, v, g, scale,
                                                   _fla.state_in(initial_state, state_v_first),
                                                   chunk_size, _group_name(group), algo,
                                                   cu_seqlens)
    return o, _fla.state_out(final_state, output_final_state, state_v_first)


def chunk_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None,
                           output_final_state=False, use_qk_l2norm_in_kernel=False,
                           use_beta_sigmoid_in_kernel=False, allow_neg_eigval=False,
                           state_v_first=False, cu_seqlens=None, cu_seqlens_cpu=None,
                           chunk_indices=None, cp_context=None, *, use_gate_in_kernel=False,
                           A_log=None, dt_bias=None, chunk_size=64, group=None, algo="auto",
                           **kwargs):
    """seqpar.chunk_gated_delta_rule with the sequence split along time across the group's
    ranks: the same arguments (flash-linear-attention's surface: grouped value heads, the
    in-kernel L2 norm, gate and beta activations, applied to each rank's slice) plus group and
    algo.
    Every rank must call it, with the same head counts and options. A_log and dt_bias are
    replicated: each rank's gradient is its slice's share (sum them over the group, as for
    any weight under sequence parallelism)."""
    fn = "seqpar.sp.chunk_gated_delta_rule"
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
    o, final_state = torch.ops.seqpar.sp_chunk_gated_delta_rule(
        q, k, v, g, beta, scale, _fla.state_in(initial_state, state_v_first), chunk_size,
        _group_name(group), algo, cu_seqlens)
    return o, _fla.state_out(final_state, output_final_state, state_v_first)


def chunk_kda(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False,
              use_qk_l2norm_in_kernel=False, use_gate_in_kernel=False,
              use_beta_sigmoid_in_kernel=False, allow_neg_eigval=False, safe_gate=False,
              lower_bound=None, disable_recompute=False, return_intermediate_states=False,
              state_v_first=False, cu_seqlens=None, cu_seqlens_cpu=None, cp_context=None,
              use_graph=False, max_num_seqs=None, *, A_log=None, dt_bias=None, chunk_size=64,
              group=None, algo="auto", **kwargs):
    """seqpar.chunk_kda with the sequence split along time across the group's ranks: the same
    arguments plus group and algo. Every rank must call it, with the same head counts and
    options. A_log and dt_bias are replicated: each rank's gradient is its slice's share."""
    given = locals()  # the arguments, before any other name is bound
    options = {name: given[name] for name in _fla.KDA_OPTIONS}
    q, k, g, beta, init, cu_seqlens, state_v_first = _fla.kda_arguments(
        "seqpar.sp.chunk_kda", q, k, v, g, beta, initial_state, kwargs, **options)
    load_library()
    o, final_state = torch.ops.seqpar.sp_chunk_kda(q, k, v, g, beta, scale, init, chunk_size,
                                                   _group_name(group), algo, cu_seqlens)
    return o, _fla.state_out(final_state, output_final_state, state_v_first)


def chunk_gated_delta_product(q, k, v, g, beta, num_householder, scale=None,
                              initial_state=None, output_final_state=False,
                              use_qk_l2norm_in_kernel=False, cu_seqlens=None,
                              cu_seqlens_cpu=None, cp_context=None, *, chunk_size=64,
                              group=None, algo="auto", **kwargs):
    """seqpar.chunk_gated_delta_product with the sequence split along time across the group's
    ranks: each rank passes its slice of the tokens (k, v, beta with num_householder rows per
    token); the same arguments plus group and algo. Every rank must call it."""
    fn = "seqpar.sp.chunk_gated_delta_product"
    q, k, g, beta, cu_seqlens = _fla.delta_product_inputs(
        fn, q, k, v, g, beta, use_qk_l2norm_in_kernel, cu_seqlens, cu_seqlens_cpu, cp_context,
        kwargs)
    load_library()
    o, final_state = torch.ops.seqpar.sp_chunk_gated_delta_product(
        q, k, v, g, beta, num_householder, scale, initial_state, chunk_size, _group_name(group),
        algo, cu_seqlens)
    return o, _fla.state_out(final_state, output_final_state, False)


def previous_steps(x, width, initial=None, group=None, algo="auto", cu_seqlens=None):
    """seqpar.previous_steps with the sequence split along time across the group's ranks:
    (before, last), the `width` steps before this rank's slice (from as many earlier ranks as
    needed; slices may be shorter than `width` or empty) and the `width` steps ending the whole
    sequence (the same on every rank). initial is read on rank 0. A causal convolution of
    `width + 1` taps over this rank's slice is then an ordinary one over
    torch.cat([before, x], 1) without padding.
    cu_seqlens (packed sequences: the whole pack's bounds, the same on every rank): initial is
    (N, width, channels) on every rank, `before` one window per segment of this rank's slice
    (their bounds: packed_bounds), `last` (N, width, channels)."""
    load_library()
    return torch.ops.seqpar.sp_previous_steps(x, width, initial, _group_name(group), algo,
                                              cu_seqlens)


def packed_bounds(cu_seqlens, local_time, group=None):
    """The bounds of this rank's segments of a pack (cu_seqlens of the whole pack, the same on
    every rank; local_time this rank's number of steps): the cu_seqlens of its slice. Checks
    cu_seqlens on every rank together. Every rank must call it."""
    load_library()
    return torch.ops.seqpar.sp_packed_bounds(cu_seqlens, local_time, _group_name(group))


def causal_conv1d(x, weight, bias=None, activation=None, initial_state=None,
                  output_final_state=False, group=None, algo="auto", cu_seqlens=None):
    """seqpar.causal_conv1d with the sequence split along time across the group's ranks: the
    first W - 1 outputs of a rank read the inputs before its slice (from as many earlier ranks
    as needed) through previous_steps. initial_state is read on rank 0; final_state is the
    global one, the same on every rank. Every rank must call it (empty slices included).
    cu_seqlens (packed sequences, the same on every rank): no window reaches across a sequence
    start; initial_state and final_state (N, W - 1, dim) on every rank."""
    local_cu = None if cu_seqlens is None else packed_bounds(cu_seqlens, x.shape[1], group)
    return _causal_conv1d(x, weight, bias, activation, initial_state, output_final_state,
                          lambda x, width, initial: previous_steps(x, width, initial, group,
                                                                   algo, cu_seqlens),
                          local_cu, None if cu_seqlens is None else cu_seqlens.shape[0] - 1)
