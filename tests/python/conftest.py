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


def pytest_collection_modifyitems(config, items):
    # The once-per-target ctest runs (SEQPAR_TARGET_RUN=1) cap the CPU engine at a target with
    # SEQPAR_CPU_CAPABILITY; where this CPU cannot run that target the cap falls to the best one
    # below it, which its own per-target run already tests, so every test is skipped, saying so.
    want = os.environ.get("SEQPAR_CPU_CAPABILITY")
    if os.environ.get("SEQPAR_TARGET_RUN") != "1" or not want:
        return
    have = seqpar.cpu_capability()
    if have != want:
        skip = pytest.mark.skip(reason=f"this CPU cannot run the '{want}' target (it runs "
                                       f"'{have}', tested by its own per-target run)")
        for item in items:
            item.add_marker(skip)
