"""Python face of seqpar: loads libseqpar and exposes its ops.

    import seqpar                       # with PYTHONPATH=<repo>/python
    h, h_last = seqpar.scan(a, b, h0=None, reverse=False)

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

__all__ = ["load_library", "library_path", "scan", "scan_summary", "cpu_capability"]

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


def scan(a, b, h0=None, reverse=False, checkpoint_every=0):
    """h_t = a_t * h_{t-1} + b_t along dim 1 of (batch, time, *channels) tensors.

    Returns (h, h_last). checkpoint_every=c > 0 keeps only every c-th state for backward and
    recomputes the rest (activation memory T*D/c).
    """
    load_library()
    if checkpoint_every:
        return torch.ops.seqpar.scan_checkpointed(a, b, h0, reverse, checkpoint_every)
    return torch.ops.seqpar.scan(a, b, h0, reverse)


def scan_summary(a, b, reverse=False):
    """Propagator summary (A, B) of the whole time range: h_last = A * h0 + B."""
    load_library()
    return torch.ops.seqpar.scan_summary(a, b, reverse)


def cpu_capability():
    """The CPU engine's instruction-set target ("scalar", "avx2", "avx512"), chosen at run time
    from what the CPU supports and capped by the environment variable SEQPAR_CPU_CAPABILITY."""
    load_library()
    return torch.ops.seqpar.cpu_capability()
