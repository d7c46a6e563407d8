"""Shared test set-up: the problems here are tiny, so every test runs single-threaded."""
import pytest

from theorylab.devices import single_threaded


@pytest.fixture(autouse=True)
def _one_thread():
    with single_threaded():
        yield
