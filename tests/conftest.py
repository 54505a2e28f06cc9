"""Unit-test fixtures shared by several test modules."""

from __future__ import annotations

import pytest
import torch

# A random SAM 3-architecture teacher small enough for unit tests (sam3m4.distill.cache.save_random_teacher).
TINY_TEACHER = dict(image_size=56, hidden_size=32, vit_layers=2, vit_window=4, num_queries=8)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny ops on a shared 2-core box: 2 OpenMP threads wait on each other for whole time slices."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_teacher_kwargs() -> dict:
    return dict(TINY_TEACHER)
