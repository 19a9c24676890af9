"""Shared data for the coders tests."""

import numpy as np
import pytest


@pytest.fixture
def x():
    """20k Laplace entries at gradient scale (float32)."""
    return (np.random.default_rng(0).laplace(size=20_000) * 1e-3).astype(np.float32)

