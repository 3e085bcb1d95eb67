"""Tiny four-phase cases for the segmenter's tests (a few ms each; no phantom needed).

Imported by ``conftest.py`` (fixtures) and by the DDP test's worker processes.

An ellipsoid liver with one spherical tumor, four phases with the paper's typical HU contrast
(the tumor is bright in AP, dark in PVP), noise, and a chosen geometry.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from builders import HYPOVASCULAR, Anatomy, liver_case
from diff4mmlits import PHASES
from diff4mmlits.data.case import Case

PHASE_HU = {name: (HYPOVASCULAR.liver[name], HYPOVASCULAR.tumor[name]) for name in PHASES}
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
    """A labelled, registered case (every phase on the PVP grid): one tumor near the liver's centre."""
    anatomy = Anatomy(liver_centre=(0.5, 0.5, 0.5), liver_radii=(0.3, 0.33, 0.33), tumor_radius_vox=(2.5, 4.0),
                      tumor_spread=0.1)
    return liver_case(case_id, seed, shape=shape, spacing=spacing, origin=origin, direction=direction, phases=phases,
                      tumors=int(tumor), contrast=HYPOVASCULAR, anatomy=anatomy)


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
            array[ball] = HYPOVASCULAR.tumor[name]
            phases[name] = volume.with_array(array)
        return Case(normal.case_id + "_painted", phases, normal.label.with_array(label), normal.annotated_phase)
