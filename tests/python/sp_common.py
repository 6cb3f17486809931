"""Helpers shared by the sequence-parallel Python tests: library loading, the single-process
float64 reference, and the slice lengths of each split (the same rules as tests/comm)."""
import glob
import os

import torch


def find_library():
    """libseqpar.so from SEQPAR_LIBRARY, else the newest one in a build folder of the repo."""
    path = os.environ.get("SEQPAR_LIBRARY", "")
    if path and os.path.exists(path):
        return path
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    found = glob.glob(os.path.join(root, "build*", "src", "libseqpar.so"))
    return max(found, key=os.path.getmtime) if found else None


def load_seqpar():
    path = find_library()
    if path is None:
        raise RuntimeError("libseqpar.so not found: build it or set SEQPAR_LIBRARY")
    torch.ops.load_library(path)
    return path


def reference_scan(a, b, h0, reverse):
    """h_t = a_t * h_{t-1} + b_t as a plain loop (differentiable), time along dim 1."""
    T = a.shape[1]
    state = h0 if h0 is not None else torch.zeros_like(a[:, 0] if T else a.sum(1))
    hs = [None] * T
    for k in range(T):
        t = T - 1 - k if reverse else k
        state = a[:, t] * state + b[:, t]
        hs[t] = state
    h = torch.stack(hs, 1) if T else torch.empty_like(a)
    return h, state


def slice_lengths(split, P):
    if split == "even":
        return [6] * P
    if split == "uneven":
        return [1 + (7 * r + 3) % 5 for r in range(P)]
    # "empty": rank 1 holds nothing, and the last rank when P > 3, and rank 0 when P > 4.
    return [0 if (r == 1 or (r == P - 1 and P > 3) or (r == 0 and P > 4)) else 3 + r % 4
            for r in range(P)]
