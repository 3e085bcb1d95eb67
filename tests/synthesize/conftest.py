"""Fixtures of the synthesizer's tests (the cases themselves are built in ``synth_toys``)."""

from __future__ import annotations

import pytest
from synth_toys import toy_pair

from diff4mmlits.config import resolve_config


@pytest.fixture(scope="session")
def smoke_config():
    return resolve_config("smoke")


@pytest.fixture(scope="session")
def toy_cases():
    """Three ``(real, normal)`` pairs of 24³ registered toy cases."""
    return [toy_pair(seed) for seed in range(3)]
