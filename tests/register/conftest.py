"""A tiny shifted-anatomy case with a known displacement (independent of the phantom)."""

from __future__ import annotations

import numpy as np
import pytest

from diff4mmlits.data.case import Case
from diff4mmlits.data.volume import Volume

# HU of (body, liver, tumor, spine) per phase: contrasts differ, as between real phases.
CONTRAST = {"NC": (40.0, 60.0, 40.0, 400.0), "AP": (45.0, 75.0, 110.0, 400.0),
            "PVP": (50.0, 110.0, 85.0, 400.0), "DP": (48.0, 95.0, 75.0, 400.0)}


def anatomy_hu(world_zyx: np.ndarray, phase: str, rng: np.random.Generator) -> np.ndarray:
    """HU of a simple abdomen at world points ``(..., 3)`` (z, y, x mm): body, liver, tumor, spine."""
    z, y, x = world_zyx[..., 0], world_zyx[..., 1], world_zyx[..., 2]
    body_hu, liver_hu, tumor_hu, bone_hu = CONTRAST[phase]
    image = np.full(z.shape, -1000.0)
    body = (y / 70.0) ** 2 + (x / 95.0) ** 2 <= 1.0
    image[body] = -100.0  # fat
    image[((y / 58.0) ** 2 + (x / 82.0) ** 2 <= 1.0)] = body_hu  # muscle and organs
    liver = ((z - 5) / 45.0) ** 2 + ((y + 5) / 38.0) ** 2 + ((x + 30) / 42.0) ** 2 <= 1.0
    image[liver] = liver_hu
    image[((z - 12) / 9.0) ** 2 + ((y + 8) / 9.0) ** 2 + ((x + 38) / 9.0) ** 2 <= 1.0] = tumor_hu
    image[((y - 40) / 12.0) ** 2 + (x / 12.0) ** 2 <= 1.0] = bone_hu
    vessel = ((y + 5) / 5.0) ** 2 + ((x + 22) / 5.0) ** 2 <= 1.0
    image[vessel & liver] = liver_hu + 60.0
    return image + rng.normal(0.0, 8.0, size=z.shape)


def label_of(world_zyx: np.ndarray) -> np.ndarray:
    z, y, x = world_zyx[..., 0], world_zyx[..., 1], world_zyx[..., 2]
    label = np.zeros(z.shape, np.uint8)
    label[((z - 5) / 45.0) ** 2 + ((y + 5) / 38.0) ** 2 + ((x + 30) / 42.0) ** 2 <= 1.0] = 1
    label[((z - 12) / 9.0) ** 2 + ((y + 8) / 9.0) ** 2 + ((x + 38) / 9.0) ** 2 <= 1.0] = 2
    return label


def grid(shape: tuple[int, int, int], spacing: tuple[float, float, float], origin: tuple[float, float, float]) -> np.ndarray:
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(float)
    return np.asarray(origin) + index * np.asarray(spacing)


def make_shifted_case(shift_mm=(10.0, 3.0, -2.0), shape=(24, 28, 32), spacing=(6.0, 6.0, 7.0),
                      phases=("NC", "AP", "PVP", "DP"), seed: int = 0) -> tuple[Case, dict[str, Volume], np.ndarray]:
    """A case whose non-PVP phases show the anatomy moved by ``shift_mm`` (z, y, x), on their own grids.

    Returns ``(case, truth_labels, displacement_mm)``: truth labels per phase on that phase's grid,
    and the true displacement ``(3,)``: PVP point p lies at p + d in every other phase.
    """
    rng = np.random.default_rng(seed)
    origin = tuple(-(n - 1) * s / 2.0 for n, s in zip(shape, spacing))
    shift = np.asarray(shift_mm, dtype=float)
    volumes, truth = {}, {}
    for name in phases:
        if name == "PVP":
            phase_origin = origin
            move = np.zeros(3)
        else:
            phase_origin = tuple(o + d for o, d in zip(origin, (3.0, -4.0, 5.0)))
            move = shift
        world = grid(shape, spacing, phase_origin)
        volumes[name] = Volume(anatomy_hu(world - move, name, rng).astype(np.float32), spacing, phase_origin)
        truth[name] = Volume(label_of(world - move), spacing, phase_origin, kind="label")
    case = Case("shifted", volumes, label=truth["PVP"])
    return case, truth, shift


@pytest.fixture
def shifted_case():
    return make_shifted_case()
