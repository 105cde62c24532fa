"""Fixtures shared by several test modules, and the torch thread count of pytest's workers."""

import os

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on the two cores: one torch thread each, or a test's matmuls on
    # two threads fight the other worker (train() still sets its own count, as in production).
    torch.set_num_threads(1)


@pytest.fixture
def one_torch_thread():
    """Run a test on one torch thread: the machines are shared, and two threads fighting other
    processes made tiny transformer forwards ~30× slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def keep_torch_threads():
    """Give back the caller's torch thread count: train() sets it for the whole process."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
