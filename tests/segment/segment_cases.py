"""Tiny four-phase cases for the segmenter's tests (a few ms each; no phantom needed).

Imported by ``conftest.py`` (fixtures) and by the DDP test's worker processes.

An ellipsoid liver with one spherical tumor, four phases with the paper's typical HU contrast
(the tumor is bright in AP, dark in PVP), noise, and a chosen geometry.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from diff4mmlits import PHASES
from diff4mmlits.data.case import Case
from diff4mmlits.data.volume import Volume

PHASE_HU = {"NC": (60.0, 40.0), "AP": (70.0, 110.0), "PVP": (110.0, 80.0), "DP": (90.0, 70.0)}
"""(liver, tumor) mean HU per phase."""


def make_case(
    case_id: str = "case_000",
    seed: int = 0,
    shape: tuple[int, int, int] = (20, 32, 32),
    spacing: tuple[float, float, float] = (2.0, 1.5, 1.5),
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
    direction: np.ndarray | None = None,
    phases: Sequence[str] = PHASES,
    tumor: bool = True,
) -> Case:
    """A labelled, registered case (every phase on the PVP grid)."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    centre = np.asarray(shape, dtype=np.float32) / 2 + rng.uniform(-1.5, 1.5, 3)
    radii = np.asarray(shape, dtype=np.float32) * np.array([0.3, 0.33, 0.33])
    liver = ((zz - centre[0]) / radii[0]) ** 2 + ((yy - centre[1]) / radii[1]) ** 2 + ((xx - centre[2]) / radii[2]) ** 2 < 1
    label = liver.astype(np.uint8)
    if tumor:
        t_centre = centre + rng.uniform(-2, 2, 3)
        t_radius = rng.uniform(2.5, 4.0)
        ball = ((zz - t_centre[0]) * spacing[0] / spacing[1]) ** 2 + (yy - t_centre[1]) ** 2 + (xx - t_centre[2]) ** 2 < t_radius**2
        label[ball & liver] = 2
    direction = np.eye(3) if direction is None else direction
    volumes = {}
    for name in phases:
        liver_hu, tumor_hu = PHASE_HU[name]
        array = np.where(label == 1, liver_hu, np.where(label == 2, tumor_hu, -80.0)) + rng.normal(0, 8, shape)
        volumes[name] = Volume(array.astype(np.float32), spacing, origin, direction)
    return Case(case_id, volumes, Volume(label, spacing, origin, direction, "label"))


class BallPainter:
    """Test double of the synthesize stage's TumorPainter: one random ball of tumor HU in the liver."""

    def paint(self, normal: Case, rng: np.random.Generator) -> Case:
        liver = normal.liver_mask
        points = np.argwhere(liver)
        centre = points[rng.integers(len(points))]
        grid = np.indices(liver.shape).transpose(1, 2, 3, 0)
        ball = (np.linalg.norm(grid - centre, axis=-1) < rng.uniform(2.0, 3.5)) & liver
        label = normal.label.array.copy()
        label[ball] = 2
        phases = {}
        for name, volume in normal.phases.items():
            array = volume.array.copy()
            array[ball] = PHASE_HU[name][1]
            phases[name] = volume.with_array(array)
        return Case(normal.case_id + "_painted", phases, normal.label.with_array(label), normal.annotated_phase)
