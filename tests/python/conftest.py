"""Shared pytest setup: loads libseqpar the way users do (python/seqpar), once per session."""
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "python"))

import seqpar  # noqa: E402

seqpar.load_library()


@pytest.fixture(scope="session")
def repo_root():
    return REPO


def pytest_configure(config):
    # Cases that add coverage of the wrapper rather than of a CPU target's kernels: the
    # once-per-target ctest runs (pytest_target_*) deselect them with -m "not exhaustive";
    # every other run keeps them.
    config.addinivalue_line("markers", "exhaustive: deselected by the once-per-target runs")
