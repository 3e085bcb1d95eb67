"""Shared test set-up: quiet progress bars, one torch thread, seeded randomness."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("DIFF4MMLITS_NO_PROGRESS", "1")

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
"""``../shared/data/real`` beside the checkout; tests using it skip when it is absent."""


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(1)
    np.random.seed(0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
