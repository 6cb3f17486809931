"""flash-linear-attention's call surface for seqpar's matrix-state functions.

Code written for FLA's `chunk_gated_delta_rule` and `chunk_gla` (fla-core 0.6.0), or for
transformers' models that call them, passes FLA's keyword arguments: grouped value heads,
q/k L2 normalisation, the gate and beta activations "in the kernel", the state layout, and
arguments for packed sequences and FLA's context parallelism. seqpar's ops take the plain
recurrence (one head count, log decays, betas, a (B, H, K, V) state), so the one-process and
the seqpar.sp functions turn FLA's arguments into the op's inputs here, with differentiable
PyTorch operations, and refuse what they cannot honour instead of ignoring it. Everything here
is per token and per head, so it runs on each rank's slice unchanged under seqpar.sp.
"""
import warnings

import torch
import torch.nn.functional as F

# FLA's arguments that seqpar takes but cannot honour, with the reason given to the caller.
# Each is refused when it differs from FLA's default (None).
_NOT_SUPPORTED = {
    "cp_context": ("(FLA's context parallelism) is not supported: seqpar.sp's functions split "
                   "the sequence across the ranks of a torch.distributed group instead"),
    "return_intermediate_states": "(FLA's inference-only per-chunk states) is not supported",
    "use_graph": "(FLA's CUDA-graph chunk list) is not supported",
    "max_num_seqs": "(FLA's CUDA-graph chunk list) is not supported",
}

# FLA's l2norm_fwd epsilon: y = x / sqrt(sum(x^2) + eps).
_L2NORM_EPS = 1e-6


def refuse_unsupported(fn, given, kwargs):
    """RuntimeError naming the first FLA argument seqpar cannot honour (given: name -> value,
    refused unless None) or the first keyword argument that neither FLA nor seqpar defines."""
    for name, value in given.items():
        if value is not None:
            raise RuntimeError(f"{fn}: argument '{name}' {_NOT_SUPPORTED[name]}")
    for name in kwargs:
        raise RuntimeError(f"{fn}: argument '{name}' is not supported (not an argument of "
                           f"seqpar's nor of flash-linear-attention's function)")


def packed_sequences(fn, cu_seqlens, cu_seqlens_cpu):
    """The cu_seqlens the op takes (packed sequences, docs/packed_sequences.md). FLA's callers
    pass the boundaries as cu_seqlens (on the inputs' device) and may add cu_seqlens_cpu, a host
    copy that spares a device synchronisation; seqpar reads the host copy when there is one.
    Both must then hold the same values (checked when both are on the CPU)."""
    if cu_seqlens_cpu is None:
        return cu_seqlens
    if (cu_seqlens is not None and cu_seqlens.device.type == "cpu"
            and not torch.equal(cu_seqlens, cu_seqlens_cpu)):
        raise ValueError(f"{fn}: 'cu_seqlens' and 'cu_seqlens_cpu' hold different boundaries")
    return cu_seqlens_cpu


def check_flags(fn, **flags):
    """TypeError for a flag given a number other than 0 or 1: before FLA's arguments were added,
    seqpar's chunk_size came right after output_final_state, where FLA has a flag, so an old
    positional chunk_size would otherwise switch an option on silently."""
    for name, value in flags.items():
        if isinstance(value, int) and not isinstance(value, bool) and value not in (0, 1):
            raise TypeError(f"{fn}: argument '{name}' must be a bool, got {value!r} "
                            f"(chunk_size is keyword-only: chunk_size={value!r})")


def state_v_first_alias(fn, state_v_first, kwargs):
    """FLA's deprecated name for state_v_first, accepted as FLA does (popped from kwargs)."""
    if "transpose_state_layout" not in kwargs:
        return state_v_first
    if state_v_first:
        raise ValueError(f"{fn}: cannot pass both 'state_v_first' and the deprecated "
                         f"'transpose_state_layout'")
    warnings.warn("'transpose_state_layout' is deprecated and renamed to 'state_v_first'",
                  DeprecationWarning, stacklevel=3)
    return bool(kwargs.pop("transpose_state_layout"))


def state_in(initial_state, state_v_first):
    """The op's (B, H, K, V) layout from FLA's V-first (B, H, V, K) one."""
    if initial_state is None or not state_v_first:
        return initial_state
    return initial_state.transpose(-1, -2).contiguous()


def state_out(final_state, output_final_state, state_v_first):
    if not output_final_state:
        return None
    return final_state.transpose(-1, -2).contiguous() if state_v_first else final_state


def grouped_value_heads(fn, q, k, v):
    """q and k repeated to v's head count: value head j reads q/k head j // (HV // H), FLA's
    grouped value attention. Autograd sums the copies' gradients back onto the H heads."""
    if q.dim() != 4 or v.dim() != 4 or v.shape[2] == q.shape[2]:
        return q, k  # one head count, or a shape error the op reports with the argument's name
    H, HV = q.shape[2], v.shape[2]
    if HV % H != 0:
        raise ValueError(f"{fn}: 'v' has HV = {HV} heads, not a multiple of the H = {H} heads of "
                         f"'q' and 'k' (grouped value heads need HV % H == 0)")
    return q.repeat_interleave(HV // H, dim=2), k.repeat_interleave(HV // H, dim=2)


def half_precision_gates(q, *gates):
    """g and beta in float32 with bfloat16 or float16 q, k, v, rounded to q's dtype. FLA takes
    that mix (transformers' Qwen3-Next computes g in float32 for a bfloat16 model); seqpar's
    op takes one dtype, and computes half-precision inputs in float32 either way. Any other
    mismatch is left for the op to report with the argument's name."""
    if q.dtype not in (torch.bfloat16, torch.float16):
        return gates
    return tuple(x.to(q.dtype) if x is not None and x.dtype == torch.float32 else x
                 for x in gates)


def _compute_dtype(x):
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _l2norm(x):
    """FLA's l2norm: computed in float32 (float64 for float64), stored in x's dtype."""
    y = x.to(_compute_dtype(x))
    return (y * torch.rsqrt((y * y).sum(-1, keepdim=True) + _L2NORM_EPS)).to(x.dtype)


def _check_neg_eigval(fn, allow_neg_eigval, use_beta_sigmoid_in_kernel):
    if allow_neg_eigval and not use_beta_sigmoid_in_kernel:
        raise ValueError(f"{fn}: 'allow_neg_eigval=True' requires "
                         f"'use_beta_sigmoid_in_kernel=True'")


def _beta_sigmoid(beta, allow_neg_eigval):
    """FLA's in-kernel beta: sigmoid(beta), 2 * sigmoid(beta) with allow_neg_eigval, computed in
    float32 (float64 for float64) and stored in beta's dtype."""
    b = beta.to(_compute_dtype(beta))
    return ((2.0 if allow_neg_eigval else 1.0) * torch.sigmoid(b)).to(beta.dtype)


def gated_delta_rule_inputs(fn, q, k, v, g, beta, use_qk_l2norm_in_kernel, use_gate_in_kernel,
                            A_log, dt_bias, use_beta_sigmoid_in_kernel, allow_neg_eigval):
    """(q, k, g, beta) for the op from FLA's options, in FLA's order: L2 norm of q and k, beta
    through a sigmoid (times 2 with allow_neg_eigval), the gate -exp(A_log) softplus(g + dt_bias),
    then q and k repeated to v's heads. The activations run in float32 (float64 for float64
    inputs) and are stored in the inputs' dtype, which the op requires of all of them (a
    float32 g or beta with half-precision q is rounded to q's dtype)."""
    _check_neg_eigval(fn, allow_neg_eigval, use_beta_sigmoid_in_kernel)
    if use_gate_in_kernel and A_log is None:
        raise ValueError(f"{fn}: 'A_log' must be given with 'use_gate_in_kernel=True'")
    if use_qk_l2norm_in_kernel:
        q, k = _l2norm(q), _l2norm(k)
    if use_beta_sigmoid_in_kernel:
        beta = _beta_sigmoid(beta, allow_neg_eigval)
    if use_gate_in_kernel:
        # FLA's naive_gdn_gate; A_log and dt_bias have HV elements, one per value head (g's
        # last axis). F.softplus's threshold (linear above 20) is the one FLA's kernel uses.
        ct = _compute_dtype(g)
        x = g.to(ct)
        if dt_bias is not None:
            x = x + dt_bias.to(ct).reshape(-1)
        g = (-torch.exp(A_log.to(ct).reshape(-1)) * F.softplus(x)).to(g.dtype)
    g, beta = half_precision_gates(q, g, beta)
    q, k = grouped_value_heads(fn, q, k, v)
    return q, k, g, beta


def delta_product_inputs(fn, q, k, v, g, beta, use_qk_l2norm_in_kernel, cu_seqlens,
                         cu_seqlens_cpu, cp_context, kwargs):
    """(q, k, g, beta, cu_seqlens) for the DeltaProduct ops from FLA's arguments: the refusals,
    the L2 norm of q and k, float32 gates rounded to half-precision q's dtype, q and k repeated
    to v's heads."""
    refuse_unsupported(fn, {"cp_context": cp_context}, kwargs)
    cu_seqlens = packed_sequences(fn, cu_seqlens, cu_seqlens_cpu)
    check_flags(fn, use_qk_l2norm_in_kernel=use_qk_l2norm_in_kernel)
    if use_qk_l2norm_in_kernel:
        q, k = _l2norm(q), _l2norm(k)
    g, beta = half_precision_gates(q, g, beta)
    q, k = grouped_value_heads(fn, q, k, v)
    return q, k, g, beta, cu_seqlens


def kda_inputs(fn, q, k, v, g, beta, use_qk_l2norm_in_kernel, use_gate_in_kernel, A_log,
               dt_bias, use_beta_sigmoid_in_kernel, allow_neg_eigval, safe_gate, lower_bound):
    """(q, k, g, beta) for the KDA ops from FLA's options, in FLA's order: the L2 norm of q and
    k; the gate per key channel, -exp(A_log) softplus(g + dt_bias) (A_log (HV,), dt_bias
    (HV * K,)), or with safe_gate and lower_bound, lower_bound * sigmoid(exp(A_log) (g +
    dt_bias)) (without A_log: lower_bound * sigmoid(g + dt_bias)); beta through a sigmoid (times
    2 with allow_neg_eigval); then q and k repeated to v's heads. Computed in float32 (float64
    for float64) and stored in the inputs' dtype."""
    _check_neg_eigval(fn, allow_neg_eigval, use_beta_sigmoid_in_kernel)
    bounded = use_gate_in_kernel and safe_gate and lower_bound is not None
    if use_gate_in_kernel and A_log is None and not bounded:
        raise ValueError(f"{fn}: 'A_log' must be given with 'use_gate_in_kernel=True' (or "
                         f"'safe_gate=True' with 'lower_bound')")
    if safe_gate and use_gate_in_kernel and lower_bound is None:
        raise ValueError(f"{fn}: 'safe_gate=True' with 'use_gate_in_kernel=True' requires "
                         f"'lower_bound'")
    if use_qk_l2norm_in_kernel:
        q, k = _l2norm(q), _l2norm(k)
    if use_beta_sigmoid_in_kernel:
        beta = _beta_sigmoid(beta, allow_neg_eigval)
    if use_gate_in_kernel:
        ct = _compute_dtype(g)
        HV = g.shape[-2]
        x = g.to(ct)
        if dt_bias is not None:
            x = x + dt_bias.to(ct).reshape(HV, -1)
        if bounded:
            if A_log is not None:
                x = A_log.to(ct).reshape(HV, 1).exp() * x
            g = (lower_bound * torch.sigmoid(x)).to(g.dtype)
        else:
            g = (-A_log.to(ct).reshape(HV, 1).exp() * F.softplus(x)).to(g.dtype)
    g, beta = half_precision_gates(q, g, beta)
    q, k = grouped_value_heads(fn, q, k, v)
    return q, k, g, beta


# The options of FLA's chunk_kda that kda_arguments takes (the wrappers pass them by name).
KDA_OPTIONS = ("use_qk_l2norm_in_kernel", "use_gate_in_kernel", "use_beta_sigmoid_in_kernel",
               "allow_neg_eigval", "safe_gate", "lower_bound", "disable_recompute",
               "return_intermediate_states", "state_v_first", "cu_seqlens", "cu_seqlens_cpu",
               "cp_context", "use_graph", "max_num_seqs", "A_log", "dt_bias")


def kda_arguments(fn, q, k, v, g, beta, initial_state, kwargs, *, use_qk_l2norm_in_kernel,
                  use_gate_in_kernel, use_beta_sigmoid_in_kernel, allow_neg_eigval, safe_gate,
                  lower_bound, disable_recompute, return_intermediate_states, state_v_first,
                  cu_seqlens, cu_seqlens_cpu, cp_context, use_graph, max_num_seqs, A_log,
                  dt_bias):
    """Everything the KDA functions (one device and seqpar.sp) do with FLA's arguments before
    the op: refusals, flags, inputs. Returns (q, k, g, beta, initial_state in the op's layout,
    cu_seqlens, state_v_first). disable_recompute is accepted and changes nothing (seqpar's KDA
    keeps what autograd keeps of its ATen composition)."""
    state_v_first = state_v_first_alias(fn, state_v_first, kwargs)
    refuse_unsupported(fn, {"cp_context": cp_context,
                            "return_intermediate_states": return_intermediate_states or None,
                            "use_graph": use_graph or None, "max_num_seqs": max_num_seqs},
                       kwargs)
    cu_seqlens = packed_sequences(fn, cu_seqlens, cu_seqlens_cpu)
    check_flags(fn, use_qk_l2norm_in_kernel=use_qk_l2norm_in_kernel,
                use_gate_in_kernel=use_gate_in_kernel,
                use_beta_sigmoid_in_kernel=use_beta_sigmoid_in_kernel,
                allow_neg_eigval=allow_neg_eigval, safe_gate=safe_gate,
                disable_recompute=disable_recompute, state_v_first=state_v_first)
    q, k, g, beta = kda_inputs(fn, q, k, v, g, beta, use_qk_l2norm_in_kernel, use_gate_in_kernel,
                               A_log, dt_bias, use_beta_sigmoid_in_kernel, allow_neg_eigval,
                               safe_gate, lower_bound)
    return q, k, g, beta, state_in(initial_state, state_v_first), cu_seqlens, state_v_first
