"""Shared test settings, and the marker of tests that need the course's CIFAR-10 copy."""

import os
from pathlib import Path

import pytest
import torch

from dsm_ref import data as D

SHARED_ARCHIVE = Path(os.environ.get(D.DATA_DIR_ENV, "/nonexistent")) / D.CIFAR10_ARCHIVE
needs_shared_cifar = pytest.mark.skipif(
    not SHARED_ARCHIVE.is_file(),
    reason=f"the CIFAR-10 archive is not at $DSM_DATA_DIR/{D.CIFAR10_ARCHIVE} "
           f"(DSM_DATA_DIR={os.environ.get(D.DATA_DIR_ENV)!r}); CI sets it to ../shared/data",
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread per process: two pytest workers with two OpenMP threads each on a 2-core
    machine stall each other (steps measured 10-50x slower); the small models of the tests gain
    nothing from more. Module scope, so it is in place before module-scoped training runs
    (their results depend on the thread count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
