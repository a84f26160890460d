"""Shared test setup: quiet TensorFlow, seeded randomness, small helpers."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def random_distributions(rng, rows, classes, concentration=1.0):
    """Dirichlet rows, float32, shape (rows, classes)."""
    return rng.dirichlet(np.full(classes, concentration), size=rows).astype("float32")
