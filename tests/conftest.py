"""Fixtures the codec tests share: one torch thread, and the codec under test loaded once per module."""

from __future__ import annotations

import os

import pytest
import torch

from cwic import Codec


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread: on a busy 2-core machine extra threads only wait for each other."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def codec() -> Codec:
    """The checkpoint in CWIC_TEST_CHECKPOINT, or the shipped one."""
    return Codec.load(os.environ.get("CWIC_TEST_CHECKPOINT"))
