"""A tiny shifted-anatomy case with a known displacement (independent of the phantom)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from diff4mmlits.data.case import Case
from diff4mmlits.data.volume import Volume

# HU of (body, liver, tumor, spine) per phase: contrasts differ, as between real phases.
CONTRAST = {"NC": (40.0, 60.0, 40.0, 400.0), "AP": (45.0, 75.0, 110.0, 400.0),
            "PVP": (50.0, 110.0, 85.0, 400.0), "DP": (48.0, 95.0, 75.0, 400.0)}


def _ellipsoid(world_zyx: np.ndarray, centre, radii) -> np.ndarray:
    return (((world_zyx - np.asarray(centre)) / np.asarray(radii)) ** 2).sum(axis=-1) <= 1.0


def label_of(world_zyx: np.ndarray) -> np.ndarray:
    """0 / 1 liver (a big right lobe and a smaller left lobe) / 2 tumor, at world points (z, y, x mm)."""
    label = np.zeros(world_zyx.shape[:-1], np.uint8)
    liver = _ellipsoid(world_zyx, (5, -5, -35), (45, 35, 40)) | _ellipsoid(world_zyx, (20, -20, 15), (18, 15, 35))
    label[liver] = 1
    label[_ellipsoid(world_zyx, (12, -8, -48), (10, 8, 9))] = 2
    return label


def anatomy_hu(world_zyx: np.ndarray, phase: str, rng: np.random.Generator) -> np.ndarray:
    """HU of a simple abdomen at world points ``(..., 3)`` (z, y, x mm): body, liver, tumor, organs, spine."""
    y, x = world_zyx[..., 1], world_zyx[..., 2]
    body_hu, liver_hu, tumor_hu, bone_hu = CONTRAST[phase]
    image = np.full(y.shape, -1000.0)
    image[(y / 75.0) ** 2 + (x / 100.0) ** 2 <= 1.0] = -100.0  # subcutaneous fat
    image[(y / 65.0) ** 2 + (x / 90.0) ** 2 <= 1.0] = body_hu  # muscle and bowel
    image[_ellipsoid(world_zyx, (-25, 25, -45), (25, 14, 14))] = body_hu + 90.0  # right kidney
    image[_ellipsoid(world_zyx, (-20, 25, 45), (25, 14, 14))] = body_hu + 90.0  # left kidney
    image[_ellipsoid(world_zyx, (20, 15, 60), (30, 18, 20))] = body_hu + 40.0  # spleen
    image[(((y - 38) / 14.0) ** 2 + (x / 14.0) ** 2) <= 1.0] = bone_hu  # spine
    image[(((y - 18) / 9.0) ** 2 + ((x - 12) / 9.0) ** 2) <= 1.0] = body_hu + 120.0  # aorta
    label = label_of(world_zyx)
    image[label == 1] = liver_hu
    image[label == 2] = tumor_hu
    vessel = (((y + 5) / 5.0) ** 2 + ((x + 22) / 5.0) ** 2 <= 1.0) & (label == 1)
    image[vessel] = liver_hu + 60.0
    image = ndimage.gaussian_filter(image, 0.8)  # the scanner's blur
    return image + rng.normal(0.0, 8.0, size=y.shape)


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


@pytest.fixture(scope="session")
def small_phantom():
    """The phantom's smoke-size case (size 32) when the phantom is installed, else skip."""
    phantom = pytest.importorskip("diff4mmlits.data.phantom")
    return phantom.make_phantom_case(0, seed=0, size=32)


@pytest.fixture
def smoke_config():
    from diff4mmlits.config import resolve_config

    return resolve_config("smoke").register
