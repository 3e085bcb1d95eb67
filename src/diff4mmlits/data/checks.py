"""The individual checks behind ``diff4mmlits validate``: pure functions on volumes.

Each check looks at one thing and returns :class:`Problem` lines (which file, what is wrong, what
to do); none raises for bad data. :mod:`diff4mmlits.data.validate` walks a dataset and calls them;
the readers call :func:`check_label_values` too, so a pipeline never trains on a broken label.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from diff4mmlits import LABEL_BACKGROUND, LABEL_LIVER, LABEL_TUMOR
from diff4mmlits.data.volume import MAX_SPACING_MM, MIN_SPACING_MM, Volume, grid_mismatch
from diff4mmlits.errors import InputError

Severity = Literal["error", "warning"]

LABEL_VALUES = (LABEL_BACKGROUND, LABEL_LIVER, LABEL_TUMOR)

MIN_HU_SPAN = 100.0
"""A CT in Hounsfield units spans far more than this (air −1000, fat −100, bone +1000)."""


@dataclass(frozen=True)
class Problem:
    """One finding: the file, what is wrong and what to do, as one line."""

    severity: Severity
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.path}: {self.message}"

    @classmethod
    def from_error(cls, err: InputError, path: str | Path) -> Problem:
        """An :class:`InputError` as an error line (its own path wins over ``path``)."""
        return cls("error", str(err.path if err.path is not None else path), err.message)


def check_geometry(volume: Volume, where: str | Path) -> list[Problem]:
    """Spacing between 0.01 and 20 mm; the direction orthonormal; every axis ≥ 2 voxels."""
    problems: list[Problem] = []
    spacing = np.asarray(volume.spacing_mm)
    if not np.isfinite(spacing).all() or (spacing < MIN_SPACING_MM).any() or (spacing > MAX_SPACING_MM).any():
        shown = tuple(float(f"{s:.4g}") for s in spacing)
        problems.append(Problem("error", str(where), f"absurd voxel spacing {shown} mm (must be ≥ {MIN_SPACING_MM:g} "
                                                     f"and ≤ {MAX_SPACING_MM:g} mm); fix the header"))
    if not np.isfinite(np.asarray(volume.origin_mm)).all():  # first: a NaN in the affine spoils the direction too
        problems.append(Problem("error", str(where), "the origin is not a finite position; fix the header"))
    direction = np.asarray(volume.direction)
    if not np.isfinite(direction).all() or not np.allclose(direction.T @ direction, np.eye(3), atol=1e-3):
        problems.append(Problem("error", str(where), "the direction matrix is not orthonormal (sheared or scaled axes); fix the header"))
    if min(volume.shape) < 2:
        problems.append(Problem("error", str(where), f"shape {volume.shape} (z, y, x) is not a 3D volume (an axis has fewer than 2 voxels); give the whole volume"))
    return problems


def geometry_is_sound(volume: Volume) -> bool:
    """True when :func:`check_geometry` finds nothing (world positions are then meaningful)."""
    return not check_geometry(volume, "")


def check_image_values(volume: Volume, where: str | Path) -> list[Problem]:
    """NaN/Inf, constant images, and intensities that are not Hounsfield units.

    Caught: floats in [-1, 1] (normalised images), integers in [0, 255] (8-bit exports), a range
    narrower than :data:`MIN_HU_SPAN`. A CT with no value below 0 HU (no air, no fat) is a warning:
    the rescale intercept was probably not applied.
    """
    where = str(where)
    array = volume.array
    if array.size == 0:
        return [Problem("error", where, "the image holds no voxels; re-export it")]
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        if not finite.all():
            count = int(array.size - np.count_nonzero(finite))
            return [Problem("error", where, f"{count} voxel(s) are NaN or Inf; fix or re-export the image")]
    elif not np.issubdtype(array.dtype, np.integer):
        return [Problem("error", where, f"voxels of type {array.dtype} are not intensities; give the CT in Hounsfield units")]
    low, high = float(np.min(array)), float(np.max(array))
    fix = "give the CT in Hounsfield units (air ≈ −1000 HU, liver ≈ 60–120 HU)"
    if high - low < 1e-6:
        return [Problem("error", where, f"the image is constant ({low:g}): it holds no anatomy; re-export it")]
    if np.issubdtype(array.dtype, np.floating) and low >= -1.0 and high <= 1.0:
        return [Problem("error", where, f"intensities lie in [{low:.3g}, {high:.3g}], a normalised image, not Hounsfield units; {fix}")]
    if low >= 0 and high <= 255 and _all_integral(array):
        return [Problem("error", where, f"intensities lie in [{low:g}, {high:g}], an 8-bit image, not Hounsfield units; {fix}")]
    if high - low < MIN_HU_SPAN:
        return [Problem("error", where, f"intensities span only [{low:.3g}, {high:.3g}], too narrow for Hounsfield units; {fix}")]
    if low >= 0:
        return [Problem("warning", where, f"no voxel below 0 HU (lowest {low:g}): no air or fat; was the rescale intercept (−1024) applied?")]
    return []


def _all_integral(array: np.ndarray) -> bool:
    if np.issubdtype(array.dtype, np.integer):
        return True
    return bool(np.all(np.equal(np.mod(array, 1), 0)))


def check_label_values(label: Volume, where: str | Path) -> list[Problem]:
    """A label holds integers in {0, 1, 2} (0 background, 1 liver, 2 tumor)."""
    where = str(where)
    array = label.array
    if array.dtype == bool:
        return []
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            return [Problem("error", where, "label holds NaN or Inf; a label must hold 0 (background), 1 (liver), 2 (tumor)")]
        if not _all_integral(array):
            return [Problem("error", where, "label holds non-integer values (a probability map?); a label must hold 0 (background), 1 (liver), 2 (tumor)")]
    elif not np.issubdtype(array.dtype, np.integer):
        return [Problem("error", where, f"label of type {array.dtype} is not a label map; save it as integers 0, 1, 2")]
    values = np.unique(array)
    extra = [int(v) if float(v).is_integer() else float(v) for v in values if v not in LABEL_VALUES]
    if extra:
        shown = extra if len(extra) <= 8 else [*extra[:8], "…"]
        return [Problem("error", where, f"label values {shown} are outside {{0, 1, 2}}; map them to 0 background, 1 liver, 2 tumor")]
    return []


def check_label_grid(label: Volume, annotated: Volume, where: str | Path, annotated_phase: str) -> list[Problem]:
    """The label must lie on the annotated phase's grid (shape, spacing, origin, direction)."""
    problem = grid_mismatch(label, annotated)
    if problem is None:
        return []
    return [Problem("error", str(where), f"label grid differs from {annotated_phase}: {problem}; resample the label onto {annotated_phase}")]


def check_label_content(label: Volume, where: str | Path) -> list[Problem]:
    """Warnings: no liver at all, or tumor components that touch no liver voxel."""
    from scipy import ndimage

    where = str(where)
    array = label.array
    if not (array > 0).any():
        return [Problem("warning", where, "the label is empty (no liver, no tumor); check the label")]
    tumor = array == LABEL_TUMOR
    if not tumor.any():
        return []
    liver = array == LABEL_LIVER
    components, count = ndimage.label(tumor)
    near_liver = ndimage.binary_dilation(liver)
    touching = np.unique(components[near_liver & tumor])
    outside = count - int(np.count_nonzero(touching))
    if outside:
        voxels = int(np.count_nonzero(tumor & ~np.isin(components, touching)))
        return [Problem("warning", where, f"{outside} tumor component(s) ({voxels} voxels) lie outside the liver; check the label")]
    return []


def check_overlap(volume: Volume, annotated: Volume, where: str | Path, annotated_phase: str) -> list[Problem]:
    """A phase must overlap the annotated phase in physical space (registration needs it)."""
    lo_a, hi_a = _extent(annotated)
    lo, hi = _extent(volume)
    overlap = np.minimum(hi, hi_a) - np.maximum(lo, lo_a)
    if (overlap > 0).all():
        return []
    return [Problem("error", str(where), f"does not overlap {annotated_phase} in physical space (check the origin and direction); the phases must show the same body region")]


def _extent(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """World bounding box (z, y, x mm) of the voxels, half a voxel beyond the centres."""
    corners = np.array(np.meshgrid(*[[-0.5, n - 0.5] for n in volume.shape], indexing="ij")).reshape(3, -1).T
    world = volume.index_to_world(corners)
    return world.min(axis=0), world.max(axis=0)
