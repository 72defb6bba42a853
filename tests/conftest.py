"""Shared test settings."""

import pytest
import torch


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
