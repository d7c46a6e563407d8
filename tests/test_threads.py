"""theorylab.threads: a scoped CPU thread count; importing theorylab changes none."""
import subprocess
import sys

import pytest
import torch
from threadpoolctl import threadpool_info

import theorylab


def _blas_threads():
    return sorted({pool["num_threads"] for pool in threadpool_info()})


def test_scoped_and_session_thread_counts_are_restored():
    outer_torch, outer_blas = torch.get_num_threads(), _blas_threads()
    with theorylab.threads(2):
        assert torch.get_num_threads() == 2 and _blas_threads() in ([2], [])
        with theorylab.threads(1):
            assert torch.get_num_threads() == 1 and _blas_threads() in ([1], [])
        assert torch.get_num_threads() == 2
    assert (torch.get_num_threads(), _blas_threads()) == (outer_torch, outer_blas)
    session = theorylab.threads(3)
    assert torch.get_num_threads() == 3
    session.restore()
    session.restore()  # idempotent
    assert torch.get_num_threads() == outer_torch
    with theorylab.threads(None):
        assert torch.get_num_threads() == outer_torch


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "1"])
def test_bad_thread_counts(bad):
    with pytest.raises(ValueError, match="positive integer"):
        theorylab.threads(bad)


def test_importing_theorylab_changes_no_thread_count():
    code = ("import torch; from threadpoolctl import threadpool_info\n"
            "def counts(): return torch.get_num_threads(), {p['num_threads'] for p in threadpool_info()}\n"
            "before = counts()\n"
            "import theorylab, theorylab.curvature, theorylab.fits, theorylab.sweep, theorylab.train\n"
            "print(before == counts())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
