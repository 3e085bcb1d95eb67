"""How the phantom is scanned: grids, slice thickness, blur, noise and contrast timing, per site.

Every phase gets its own grid: the same spacing as PVP, but another table position (z origin and
number of slices), a few mm of in-plane shift and (issue 17) its own reconstruction field of view
(pixel size ±8 %); some phases are stored with a flipped axis (slices in the other order, or x
mirrored) and the direction cosines that say so, as scanners and converters do. The field of view
is a liver-centred abdominal crop of about 240 mm (3.75 mm pixels at size 64). The ``second`` site
differs in noise (level and grain), blur, slice thickness (1.6× thicker, so fewer slices) and
contrast timing (earlier arterial, later portal and delayed phases): an out-of-distribution scanner.
The ``third`` site has thick slices (2.4×), a wider field of view and its own noise and timing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from diff4mmlits import PHASES


@dataclass(frozen=True)
class Site:
    """A scanner and protocol: ranges the per-case acquisition is drawn from."""

    field_of_view_mm: tuple[float, float]  # in-plane, drawn per case
    z_extent_mm: float  # PVP z coverage, mm
    slice_factor: float  # slice spacing / in-plane spacing at size 64 (z voxels = 0.75 · size / factor)
    blur_voxels: tuple[float, float]  # in-plane Gaussian PSF sigma, voxels
    slice_profile: float  # z Gaussian sigma, in slice spacings
    noise_hu: tuple[float, float]
    noise_grain_voxels: float  # sigma of the Gaussian that correlates the noise in-plane, voxels
    timing: dict[str, tuple[float, float]]  # contrast timing τ range per phase (see enhancement.py)


SITES: dict[str, Site] = {
    "default": Site(
        field_of_view_mm=(228.0, 252.0), z_extent_mm=180.0, slice_factor=1.0, blur_voxels=(0.45, 0.75),
        slice_profile=0.4, noise_hu=(10.0, 25.0), noise_grain_voxels=0.7,
        timing={"NC": (0.0, 1.0), "AP": (0.0, 1.0), "PVP": (0.0, 1.0), "DP": (0.0, 1.0)},
    ),
    "second": Site(
        field_of_view_mm=(240.0, 264.0), z_extent_mm=180.0, slice_factor=1.6, blur_voxels=(0.9, 1.3),
        slice_profile=0.55, noise_hu=(18.0, 32.0), noise_grain_voxels=1.2,
        timing={"NC": (0.0, 1.0), "AP": (-0.6, 0.2), "PVP": (0.6, 1.3), "DP": (0.8, 1.6)},
    ),
    "third": Site(
        field_of_view_mm=(280.0, 330.0), z_extent_mm=200.0, slice_factor=2.4, blur_voxels=(0.6, 1.0),
        slice_profile=0.5, noise_hu=(14.0, 28.0), noise_grain_voxels=0.9,
        timing={"NC": (0.0, 1.0), "AP": (0.3, 1.2), "PVP": (-0.2, 0.7), "DP": (0.2, 1.2)},
    ),
}
"""The scanner/protocol settings: ``default``, the out-of-distribution ``second`` and ``third``
(thick slices, wide field of view)."""
FLIP_PROBABILITY = 0.3
"""Share of non-annotated phases stored with a flipped axis (z, or else x) and matching direction cosines."""
PIXEL_JITTER = 0.08
"""A non-annotated phase's in-plane pixel size is the annotated phase's × (1 ± this), drawn per phase."""


@dataclass(frozen=True)
class Grid:
    """A phase's voxel grid: shape ``(Z, Y, X)``, spacing and origin in mm (identity direction while
    drawing; ``flip_axes`` are reversed when the phase is stored, :func:`stored_geometry`)."""

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    flip_axes: tuple[int, ...] = ()

    def points(self) -> np.ndarray:
        """World positions ``(3, Z, Y, X)`` (mm, z/y/x rows) of every voxel centre, float64."""
        axes = [o + s * np.arange(n, dtype=np.float64) for o, s, n in zip(self.origin_mm, self.spacing_mm, self.shape)]
        return np.stack(np.meshgrid(*axes, indexing="ij"))

    def affine(self) -> np.ndarray:
        """``(4, 4)``: (z, y, x) indices → world mm."""
        affine = np.diag([*self.spacing_mm, 1.0])
        affine[:3, 3] = self.origin_mm
        return affine


@dataclass(frozen=True)
class Acquisition:
    """One case's scan: grids, PSF (mm), noise level and grain, per phase."""

    site: str
    grids: dict[str, Grid]
    blur_sigma_mm: tuple[float, float, float]  # z, y, x
    noise_hu: dict[str, float]
    noise_grain_voxels: float

    def to_dict(self) -> dict:
        return {
            "site": self.site,
            "grids": {p: {"shape": list(g.shape), "spacing_mm": [round(v, 4) for v in g.spacing_mm],
                          "origin_mm": [round(v, 4) for v in g.origin_mm], "flipped_axes": list(g.flip_axes)}
                      for p, g in self.grids.items()},
            "blur_sigma_mm": [round(v, 3) for v in self.blur_sigma_mm],
            "noise_hu": {p: round(v, 2) for p, v in self.noise_hu.items()},
            "noise_grain_voxels": self.noise_grain_voxels,
        }


def slice_count(site: Site, size: int, slice_mm: float | None = None) -> int:
    """Slices of the PVP grid over ``site.z_extent_mm``: ``0.75 · size / slice_factor`` (the site's
    thickness relative to its pixel, as at size 64), or as near ``slice_mm`` apart as a whole number
    of slices allows when given; at least 8."""
    if slice_mm is None:
        return max(8, int(round(0.75 * size / site.slice_factor)))
    return max(8, int(round(site.z_extent_mm / slice_mm)))


def sample_acquisition(rng: np.random.Generator, site: Site, site_name: str, size: int, centre_mm: np.ndarray,
                       grid_rng: np.random.Generator | None = None, slice_mm: float | None = None) -> Acquisition:
    """Draw grids (a ``size``-voxel square in-plane, :func:`slice_count` slices), blur and noise.

    ``centre_mm``: the world point (z, y, x) the PVP field of view is centred on. ``grid_rng`` draws
    each other phase's pixel size and flipped axes (a stream of its own, so the other draws stay as
    they were); without it, every phase has the annotated phase's pixel and none is flipped.
    ``slice_mm``: slice spacing in mm whatever ``size`` (thick slices at a fine pixel); None: the
    site's, which scales with the pixel. The draws are the same either way.
    """
    pixel = rng.uniform(*site.field_of_view_mm) / size
    slices = slice_count(site, size, slice_mm)
    spacing = (site.z_extent_mm / slices, pixel, pixel)
    shape = (slices, size, size)
    centre = np.asarray(centre_mm, dtype=np.float64) + rng.uniform(-5, 5, size=3)
    pvp_origin = centre - (np.asarray(shape) - 1) / 2 * np.asarray(spacing)
    grids = {}
    for phase in PHASES:
        if phase == "PVP":
            grids[phase] = Grid(shape, spacing, tuple(float(v) for v in pvp_origin))
            continue
        extra = int(rng.integers(-2, 4))  # another table range: a few slices more or fewer
        phase_shape = (slices + extra, size, size)
        offset = np.array([rng.uniform(-12, 12) - extra * spacing[0] / 2, rng.uniform(-4, 4), rng.uniform(-4, 4)])
        phase_spacing, flips = spacing, ()
        if grid_rng is not None:
            factor = grid_rng.uniform(1 - PIXEL_JITTER, 1 + PIXEL_JITTER)  # its own reconstruction field of view
            phase_spacing = (spacing[0], pixel * factor, pixel * factor)
            offset[1:] += (1 - factor) * (size - 1) / 2 * pixel  # about the same centre
            if grid_rng.uniform() < FLIP_PROBABILITY:
                flips = (0,) if grid_rng.uniform() < 0.6 else (2,)
        grids[phase] = Grid(phase_shape, phase_spacing, tuple(float(v) for v in pvp_origin + offset), flips)
    in_plane_blur = rng.uniform(*site.blur_voxels) * pixel
    blur = (site.slice_profile * spacing[0], in_plane_blur, in_plane_blur)
    level = rng.uniform(*site.noise_hu)
    noise = {phase: float(np.clip(level * rng.uniform(0.9, 1.1), *site.noise_hu)) for phase in PHASES}
    return Acquisition(site=site_name, grids=grids, blur_sigma_mm=blur, noise_hu=noise, noise_grain_voxels=site.noise_grain_voxels)


def stored_geometry(grid: Grid) -> tuple[tuple[float, float, float], np.ndarray]:
    """Origin (mm, z/y/x) and ``(3, 3)`` direction of ``grid`` as stored, its ``flip_axes`` reversed:
    the first stored voxel along a flipped axis is the drawn grid's last, and that axis points back."""
    origin = np.asarray(grid.origin_mm, dtype=np.float64).copy()
    direction = np.eye(3)
    for axis in grid.flip_axes:
        origin[axis] += (grid.shape[axis] - 1) * grid.spacing_mm[axis]
        direction[axis, axis] = -1.0
    return tuple(float(v) for v in origin), direction  # type: ignore[return-value]


def acquire(clean: list[np.ndarray], acquisition: Acquisition, phase: str, rng: np.random.Generator) -> list[np.ndarray]:
    """Blur each noise-free HU volume with the PSF, add one shared correlated-noise draw, round to int16.

    The same noise goes into every volume of ``clean`` (the case and its tumor-free twin), so they
    are identical wherever the blurred inputs are.
    """
    grid = acquisition.grids[phase]
    grain = acquisition.noise_grain_voxels
    noise = ndimage.gaussian_filter(rng.standard_normal(grid.shape, dtype=np.float32), sigma=(0.3, grain, grain), mode="wrap")
    noise *= np.float32(acquisition.noise_hu[phase] / max(float(noise.std()), 1e-6))
    return [np.clip(np.rint(blur(volume, acquisition, phase) + noise), -1024, 3071).astype(np.int16) for volume in clean]


def blur(clean: np.ndarray, acquisition: Acquisition, phase: str) -> np.ndarray:
    """The scanner's PSF on a noise-free HU volume of ``phase``'s grid (HU, the input's float type):
    what the scan would hold without noise."""
    sigma_voxels = [s / d for s, d in zip(acquisition.blur_sigma_mm, acquisition.grids[phase].spacing_mm)]
    return ndimage.gaussian_filter(clean, sigma=sigma_voxels, mode="nearest")
