"""Independent references for the scan tests.

* scan_reference: the sequential recurrence in float64 / complex128, one step at a time.
* naive_same_precision: the same loop in the input dtype (what a user would write in PyTorch);
  its error against the fp64 reference sets the tolerance of the kernel (docs/design.md rule 8).
* fla_naive: flash-linear-attention's pure-PyTorch reference module of an op family (fla-core's
  fla/ops/<family>/naive.py, loaded by file path: importing fla.ops needs Triton), or None.
* scan_per_sequence: scan_reference's loop on each packed sequence alone (cu_seqlens), each
  from its own row of h0, reverse from its own end.
* log_space_scan: the closed form h_t = P_t * (h0 + sum_{s<=t} b_s / P_s), P_t = prod a (real
  positive a only), in float64 with cumsum: a second reference that shares no loop with the
  first.
"""
import importlib.util
import os

import torch


def wide(dtype):
    return torch.complex128 if dtype.is_complex else torch.float64


def scan_reference(a, b, h0=None, reverse=False):
    dt = wide(a.dtype)
    a64, b64 = a.to(dt), b.to(dt)
    h = torch.zeros_like(a64[:, 0]) if h0 is None else h0.to(dt).clone()
    out = torch.empty_like(a64)
    steps = range(a.shape[1] - 1, -1, -1) if reverse else range(a.shape[1])
    for t in steps:
        h = a64[:, t] * h + b64[:, t]
        out[:, t] = h
    return out, h


def scan_per_sequence(a, b, h0, cu, reverse):
    """Each sequence alone, one step at a time in float64 (complex128 for complex64)."""
    dt = wide(a.dtype)
    hs, lasts = [], []
    for i in range(len(cu) - 1):
        lo, hi = int(cu[i]), int(cu[i + 1])
        s = h0[i].to(dt) if h0 is not None else torch.zeros(a.shape[2:], dtype=dt)
        out = [None] * (hi - lo)
        for k in range(hi - lo):
            t = hi - 1 - k if reverse else lo + k
            s = a[0, t].to(dt) * s + b[0, t].to(dt)
            out[t - lo] = s
        hs += out
        lasts.append(s)
    h = torch.stack(hs, 0).unsqueeze(0) if hs else torch.zeros((1, 0) + tuple(a.shape[2:]), dtype=dt)
    return h, torch.stack(lasts, 0) if lasts else torch.zeros((0,) + tuple(a.shape[2:]), dtype=dt)


def naive_same_precision(a, b, h0=None, reverse=False):
    h = torch.zeros_like(a[:, 0]) if h0 is None else h0.clone()
    out = torch.empty_like(a)
    steps = range(a.shape[1] - 1, -1, -1) if reverse else range(a.shape[1])
    for t in steps:
        h = a[:, t] * h + b[:, t]
        out[:, t] = h
    return out, h


def log_space_scan(a, b, h0=None):
    """Forward scan for a > 0 via cumulative log-products, in float64."""
    a64, b64 = a.double(), b.double()
    logp = torch.cumsum(torch.log(a64), dim=1)
    p = torch.exp(logp)
    s = torch.cumsum(b64 * torch.exp(-logp), dim=1)
    if h0 is not None:
        s = s + h0.double().unsqueeze(1)
    return p * s


def max_err(x, ref):
    return (x.to(ref.dtype) - ref).abs().max().item() if x.numel() else 0.0


def mean_err(x, ref):
    return (x.to(ref.dtype) - ref).abs().mean().item() if x.numel() else 0.0


def matrix_state_reference(q, k, v, g, beta=None, scale=None, initial_state=None):
    """Gated linear attention (beta None, g: (B, T, H, K)), gated DeltaNet (g, beta:
    (B, T, H)) or KDA (g: (B, T, H, K), beta: (B, T, H)), one step at a time in float64:
    S_t = diag(exp g_t) S_{t-1} + k_t v_t^T, or S_t = (I - beta_t k_t k_t^T) diag(exp g_t) S_{t-1}
    + beta_t k_t v_t^T (a scalar decay per head for gated DeltaNet); o_t = scale S_t^T q_t.
    Returns (o, S_T) in float64."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = K ** -0.5 if scale is None else scale
    q, k, v, g = (x.double() for x in (q, k, v, g))
    S = (torch.zeros(B, H, K, V, dtype=torch.float64) if initial_state is None
         else initial_state.double().clone())
    # The steps taken apart once (unbind) and the outputs stacked at the end: indexing x[:, t]
    # and writing o[:, t] step by step would make autograd's backward O(T^2) (each step's
    # backward would touch whole (B, T, ...) tensors).
    steps = [x.unbind(1) for x in (q, k, v, g)]
    betas = beta.double().unbind(1) if beta is not None else None
    o = []
    for t in range(T):
        qt, kt, vt, gt = (x[t] for x in steps)        # (B, H, K), (B, H, K), (B, H, V), g
        decay = gt.exp().unsqueeze(-1)                 # (B, H, K, 1) or (B, H, 1)
        S = decay * S if gt.dim() == kt.dim() else decay.unsqueeze(-1) * S
        if beta is None:
            S = S + kt.unsqueeze(-1) * vt.unsqueeze(-2)
        else:
            bt = betas[t].unsqueeze(-1)                # (B, H, 1)
            kS = torch.einsum("bhk,bhkv->bhv", kt, S)
            S = S + (bt * kt).unsqueeze(-1) * (vt - kS).unsqueeze(-2)
        o.append(scale * torch.einsum("bhkv,bhk->bhv", S, qt))
    o = torch.stack(o, 1) if o else torch.empty(B, 0, H, V, dtype=torch.float64)
    return o, S


def fla_naive(family):
    """fla/ops/<family>/naive.py as a module, or None when fla-core (or einops) is absent."""
    spec = importlib.util.find_spec("fla")
    if spec is None or importlib.util.find_spec("einops") is None:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "ops", family, "naive.py")
    if not os.path.exists(path):
        return None
    loader = importlib.util.spec_from_file_location(f"fla_naive_{family}", path)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module


FLA_MISSING = ("fla-core (and einops) not installed (pip install --no-deps fla-core einops): "
               "FLA's naive reference is not compared; the float64 loop still is")
