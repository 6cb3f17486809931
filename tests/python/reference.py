"""Independent references for the scan tests.

* scan_reference: the sequential recurrence in float64 / complex128, one step at a time.
* naive_same_precision: the same loop in the input dtype (what a user would write in PyTorch);
  its error against the fp64 reference sets the tolerance of the kernel (docs/design.md rule 8).
* log_space_scan: the closed form h_t = P_t * (h0 + sum_{s<=t} b_s / P_s), P_t = prod a (real
  positive a only), in float64 with cumsum: a second reference that shares no loop with the
  first.
"""
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
