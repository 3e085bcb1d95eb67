"""Small registered four-phase cases with a known tumor-free truth, for the inpaint tests.

The inpainter reads *registered* cases (every phase on the annotated grid), so these are built
directly on one grid: a body, a liver with per-phase enhancement, a vessel, one or two spherical
tumors, noise. ``truth`` holds the same phases without the tumors (same noise).
"""

from __future__ import annotations

import numpy as np
import pytest

from builders import WITH_VESSEL, liver_pair
from diff4mmlits.data.case import Case


def synthetic_case(case_id: str, seed: int, size: int = 32, tumors: int = 1) -> tuple[Case, dict[str, np.ndarray]]:
    """A registered case of ``(size·5/8, size, size)`` voxels with a vessel through the liver, and its
    tumor-free phases (HU): the truth an inpainter should reach."""
    case, normal = liver_pair(case_id, seed, shape=(max(8, size * 5 // 8), size, size), spacing=(2.5, 1.5, 1.5),
                              origin=(0.0, -20.0, 10.0), tumors=tumors, contrast=WITH_VESSEL, noise_hu=10.0)
    return case, {name: volume.array for name, volume in normal.phases.items()}


@pytest.fixture
def small_case() -> Case:
    return synthetic_case("case_000", seed=0)[0]


@pytest.fixture
def small_cases() -> list[Case]:
    return [synthetic_case(f"case_{i:03d}", seed=i, tumors=1 + i % 2)[0] for i in range(3)]
