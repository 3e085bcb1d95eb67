"""One builder of tiny liver cases for the tests (the built-in phantom is tested, and used, elsewhere).

``liver_pair`` draws a registered case (every phase on one grid): an optional body ellipse in air,
an ellipsoidal liver, an optional vessel through it and ``tumors`` balls inside the liver, each
tissue at its HU per phase plus Gaussian noise; and the same case without its tumors (tumor voxels
at the liver's HU with the same noise, label tumor → liver), which is what the inpaint stage writes.
Every random draw comes from ``seed``. Test folders keep only what is special to them (the
registration tests' misaligned anatomy in world coordinates, the translators' tissue maps, the
data tests' file layouts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from diff4mmlits import LABEL_LIVER, LABEL_TUMOR, PHASES
from diff4mmlits.data.case import Case
from diff4mmlits.data.volume import Volume


@dataclass(frozen=True)
class Contrast:
    """Mean HU of each tissue per phase."""

    liver: Mapping[str, float]
    tumor: Mapping[str, float]
    body: Mapping[str, float] | None = None
    """Soft tissue around the liver inside a body ellipse (``None``: no body, ``background`` everywhere)."""
    vessel: Mapping[str, float] | None = None
    """A straight vessel through the liver (``None``: none)."""
    background: float = -1000.0


HYPOVASCULAR = Contrast(liver={"NC": 60.0, "AP": 70.0, "PVP": 110.0, "DP": 90.0},
                        tumor={"NC": 40.0, "AP": 110.0, "PVP": 80.0, "DP": 70.0}, background=-80.0)
"""No body: liver and tumor on a −80 HU background."""
WITH_VESSEL = Contrast(liver={"NC": 60.0, "AP": 75.0, "PVP": 110.0, "DP": 95.0},
                       tumor={"NC": 40.0, "AP": 100.0, "PVP": 70.0, "DP": 70.0},
                       body={name: 45.0 for name in PHASES},
                       vessel={"NC": 40.0, "AP": 130.0, "PVP": 180.0, "DP": 125.0})
"""A body, a liver with a vessel, a tumor darker than liver in PVP."""
HYPERVASCULAR = Contrast(liver={"NC": 60.0, "AP": 75.0, "PVP": 110.0, "DP": 95.0},
                         tumor={"NC": 40.0, "AP": 115.0, "PVP": 85.0, "DP": 70.0},
                         body={"NC": 40.0, "AP": 60.0, "PVP": 70.0, "DP": 60.0})
"""A hypervascular tumor with washout: contrast −20, +40, −25, −25 HU."""


@dataclass(frozen=True)
class Anatomy:
    """Where the liver and the tumors go, in fractions of the volume's shape ``(z, y, x)``."""

    liver_centre: tuple[float, float, float] = (0.5, 0.45, 0.4)
    liver_radii: tuple[float, float, float] = (0.4, 0.25, 0.28)
    centre_jitter_vox: float = 1.0
    body_radii: tuple[float, float] = (0.45, 0.47)
    tumor_radius_vox: tuple[float, float] = (1.8, 3.2)
    """In-plane radius of each tumor ball, voxels (drawn uniformly); its z radius follows the spacing."""
    tumor_spread: float | None = None
    """Tumor centres within this fraction of the shape from the liver's centre (``None``: anywhere in it)."""


def liver_pair(
    case_id: str = "case_000",
    seed: int = 0,
    shape: tuple[int, int, int] = (20, 32, 32),
    spacing: tuple[float, float, float] = (2.0, 1.5, 1.5),
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
    direction: np.ndarray | None = None,
    phases: Sequence[str] = PHASES,
    tumors: int = 1,
    contrast: Contrast = HYPOVASCULAR,
    anatomy: Anatomy = Anatomy(),
    noise_hu: float = 8.0,
    annotated_phase: str = "PVP",
) -> tuple[Case, Case]:
    """``(case, normal)``: a labelled registered case (0 background, 1 liver, 2 tumor) and the same
    case without its tumors. Phases in HU, float32; the label on the same grid."""
    rng = np.random.default_rng(seed)
    size = np.asarray(shape, dtype=np.float64)
    zz, yy, xx = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    grid = np.stack([zz, yy, xx], -1)
    centre = size * np.asarray(anatomy.liver_centre) + rng.normal(0, anatomy.centre_jitter_vox, 3)
    liver = (((grid - centre) / (size * np.asarray(anatomy.liver_radii))) ** 2).sum(-1) <= 1
    vessel = np.zeros_like(liver)
    if contrast.vessel is not None:
        vessel = liver & (np.hypot(yy - centre[1] - 2, xx - centre[2] + 3) <= 1.5)
    tumor = np.zeros_like(liver)
    inside = np.argwhere(liver & ~vessel)
    if anatomy.tumor_spread is not None:
        near = (np.abs(inside - centre) <= anatomy.tumor_spread * size).all(axis=1)
        inside = inside[near] if near.any() else inside
    z_scale = spacing[1] / spacing[0]
    for _ in range(tumors):
        c = inside[rng.integers(len(inside))]
        r = rng.uniform(*anatomy.tumor_radius_vox)
        tumor |= liver & ((((grid - c) / [r * z_scale, r, r]) ** 2).sum(-1) <= 1)
    label = np.where(liver, LABEL_LIVER, 0).astype(np.uint8)
    label[tumor] = LABEL_TUMOR
    body = np.ones(shape, bool)
    if contrast.body is not None:
        by, bx = anatomy.body_radii
        body = ((yy - size[1] / 2) / (by * size[1])) ** 2 + ((xx - size[2] / 2) / (bx * size[2])) ** 2 <= 1
    direction = np.eye(3) if direction is None else direction
    phases_with, phases_without = {}, {}
    for name in phases:
        noise = rng.normal(0, noise_hu, shape).astype(np.float32)
        clean = np.full(shape, contrast.background, np.float32)
        if contrast.body is not None:
            clean[body] = contrast.body[name]
        clean[liver] = contrast.liver[name]
        if contrast.vessel is not None:
            clean[vessel] = contrast.vessel[name]
        painted = clean.copy()
        painted[tumor] = contrast.tumor[name]
        phases_with[name] = Volume(painted + noise, spacing, origin, direction)
        phases_without[name] = Volume(clean + noise, spacing, origin, direction)
    label_volume = Volume(label, spacing, origin, direction, "label")
    case = Case(case_id, phases_with, label_volume, annotated_phase)
    normal = Case(case_id, phases_without, label_volume.with_array(np.minimum(label, LABEL_LIVER)), annotated_phase)
    return case, normal


def liver_case(case_id: str = "case_000", seed: int = 0, **options) -> Case:
    """The labelled case of :func:`liver_pair` alone."""
    return liver_pair(case_id, seed, **options)[0]


def tiny_case(case_id: str, seed: int) -> Case:
    """A 12³ two-phase case (AP, PVP): a liver ball with a small tumor inside, noise around."""
    contrast = Contrast(liver={"AP": 70.0, "PVP": 110.0}, tumor={"AP": 60.0, "PVP": 80.0}, background=-100.0)
    anatomy = Anatomy(liver_centre=(0.5, 0.5, 0.5), liver_radii=(0.3, 0.3, 0.3), tumor_radius_vox=(1.5, 1.8),
                      tumor_spread=0.1)
    return liver_case(case_id, seed, shape=(12, 12, 12), spacing=(2.0, 1.5, 1.5), origin=(0.0, -10.0, 5.0),
                      phases=("AP", "PVP"), contrast=contrast, anatomy=anatomy, noise_hu=10.0)
