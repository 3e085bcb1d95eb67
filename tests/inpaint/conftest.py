"""Small registered four-phase cases with a known tumor-free truth, for the inpaint tests.

The inpainter reads *registered* cases (every phase on the annotated grid), so these are built
directly on one grid: a body, a liver with per-phase enhancement, a vessel, one or two spherical
tumors, noise. ``truth`` holds the same phases without the tumors (same noise).
"""

from __future__ import annotations

import numpy as np
import pytest

from diff4mmlits import PHASES
from diff4mmlits.data.case import Case
from diff4mmlits.data.volume import Volume

LIVER_HU = {"NC": 60.0, "AP": 75.0, "PVP": 110.0, "DP": 95.0}
VESSEL_HU = {"NC": 40.0, "AP": 130.0, "PVP": 180.0, "DP": 125.0}
TUMOR_HU = {"NC": 40.0, "AP": 100.0, "PVP": 70.0, "DP": 70.0}


def synthetic_case(case_id: str, seed: int, size: int = 32, tumors: int = 1) -> tuple[Case, dict[str, np.ndarray]]:
    """A registered case of ``(size·5/8, size, size)`` voxels and its tumor-free phases (HU)."""
    rng = np.random.default_rng(seed)
    depth = max(8, size * 5 // 8)
    z, y, x = np.mgrid[0:depth, 0:size, 0:size].astype(np.float32)
    body = ((y - size / 2) / (0.45 * size)) ** 2 + ((x - size / 2) / (0.47 * size)) ** 2 <= 1
    centre = np.array([depth / 2, size * 0.45, size * 0.4]) + rng.normal(0, 1, 3)
    radii = np.array([depth * 0.4, size * 0.25, size * 0.28])
    liver = (((np.stack([z, y, x], -1) - centre) / radii) ** 2).sum(-1) <= 1
    vessel = liver & (np.hypot(y - centre[1] - 2, x - centre[2] + 3) <= 1.5)
    tumor = np.zeros_like(liver)
    inside = np.argwhere(liver & ~vessel)
    for _ in range(tumors):
        c = inside[rng.integers(len(inside))]
        r = rng.uniform(1.8, 3.2)
        tumor |= liver & ((((np.stack([z, y, x], -1) - c) / [r, r, r]) ** 2).sum(-1) <= 1)
    label = np.where(liver, 1, 0).astype(np.uint8)
    label[tumor] = 2
    grid = dict(spacing_mm=(2.5, 1.5, 1.5), origin_mm=(0.0, -20.0, 10.0))
    phases, truth = {}, {}
    for name in PHASES:
        noise = rng.normal(0, 10, liver.shape).astype(np.float32)
        clean = np.where(body, 45.0, -1000.0).astype(np.float32)
        clean[liver] = LIVER_HU[name]
        clean[vessel] = VESSEL_HU[name]
        truth[name] = clean + noise
        with_tumor = clean.copy()
        with_tumor[tumor] = TUMOR_HU[name]
        phases[name] = Volume(with_tumor + noise, **grid)
    case = Case(case_id, phases, Volume(label, kind="label", **grid))
    return case, truth


@pytest.fixture
def small_case() -> Case:
    return synthetic_case("case_000", seed=0)[0]


@pytest.fixture
def small_cases() -> list[Case]:
    return [synthetic_case(f"case_{i:03d}", seed=i, tumors=1 + i % 2)[0] for i in range(3)]
