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
