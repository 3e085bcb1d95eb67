"""Fixtures of the segmenter's tests: tiny cases and a test double of the tumor painter."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from segment_cases import BallPainter, make_case

from diff4mmlits.data.case import Case


@pytest.fixture
def tiny_case() -> Callable[..., Case]:
    """``tiny_case(case_id, seed, **geometry)`` → a labelled registered :class:`Case`."""
    return make_case


@pytest.fixture
def painter() -> BallPainter:
    return BallPainter()
