"""seqpar.sp.chunk_gla and seqpar.sp.chunk_gated_delta_rule on torch.distributed gloo groups:
torchrun jobs for P = 1, 2, 3, 5 running tests/python/sp_matrix_state_worker.py, each with a
hard timeout. OMP_NUM_THREADS=1 keeps P ranks on a small machine."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sp_common import find_library  # noqa: E402
from test_sp_scan import run_worker_under_torchrun  # noqa: E402

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sp_matrix_state_worker.py")

pytestmark = pytest.mark.skipif(find_library() is None,
                                reason="libseqpar.so not built (set SEQPAR_LIBRARY)")


@pytest.mark.parametrize("nproc", [1, 2, 3, 5])
def test_sp_matrix_state_matches_one_process_under_torchrun(nproc):
    run_worker_under_torchrun(WORKER, nproc, "sp matrix-state checks passed")
