"""Shared pytest set-up."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """One intra-op torch thread for every test: the tensors here are tiny, and on a 2-core
    machine shared with other processes several OpenMP threads per process spin against each
    other and make the CPU convolutions and GRUs several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
