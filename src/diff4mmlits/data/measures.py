"""Small measures of masks shared by every paper step: Dice overlap and equivalent-sphere size.

A leaf module (numpy only), so that register (step 1), synthesize and segment can use the same
formulas as evaluate (step 5) without importing it.

Dice of two boolean masks A, B: ``2|A∩B| / (|A| + |B|)``. When both are empty the ratio is 0/0;
:func:`dice` then returns ``empty``, by default 1 (the paper's rule, as in
:mod:`diff4mmlits.evaluate.metrics`: nothing to find and nothing found is a perfect score). Callers
that must tell "undefined" apart (registration QC) pass ``empty=None``. :func:`dice_from_counts` is
the same rule on voxel counts (pooled or per-lesion Dice, where the masks are not at hand).

Equivalent sphere: the sphere with the volume of a mask, radius ``(3V / 4π)^(1/3)`` in mm.
"""

from __future__ import annotations

import math
from typing import overload

import numpy as np


@overload
def dice(a: np.ndarray, b: np.ndarray) -> float: ...


@overload
def dice(a: np.ndarray, b: np.ndarray, *, empty: float) -> float: ...


@overload
def dice(a: np.ndarray, b: np.ndarray, *, empty: None) -> float | None: ...


def dice(a: np.ndarray, b: np.ndarray, *, empty: float | None = 1.0) -> float | None:
    """Dice overlap ``2|A∩B| / (|A| + |B|)`` in [0, 1] of two masks of one shape (nonzero = inside).

    Args:
        a, b: masks of the same shape (any dimensionality; cast to boolean).
        empty: the value when both masks are empty (default 1, the paper's rule; ``None`` for "undefined").
    """
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    return dice_from_counts(int(np.logical_and(a, b).sum()), int(a.sum()), int(b.sum()), empty=empty)


@overload
def dice_from_counts(shared: float, size_a: float, size_b: float) -> float: ...


@overload
def dice_from_counts(shared: float, size_a: float, size_b: float, *, empty: float) -> float: ...


@overload
def dice_from_counts(shared: float, size_a: float, size_b: float, *, empty: None) -> float | None: ...


def dice_from_counts(shared: float, size_a: float, size_b: float, *, empty: float | None = 1.0) -> float | None:
    """:func:`dice` from voxel counts: ``2·shared / (size_a + size_b)``, ``empty`` when both sizes are 0.

    Args:
        shared: voxels in both masks (|A∩B|); size_a, size_b: voxels in each (|A|, |B|).
        empty: the value when both masks are empty (as :func:`dice`).
    """
    total = size_a + size_b
    if total == 0:
        return empty
    return 2.0 * shared / total


def sphere_radius_mm(volume_ml: float) -> float:
    """Radius (mm) of the sphere of ``volume_ml`` millilitres (1 mL = 1000 mm³): ``(3V / 4π)^(1/3)``."""
    return float((3 * volume_ml * 1000 / (4 * math.pi)) ** (1 / 3))


def equivalent_radius_mm(voxels: int, spacing_mm: tuple[float, float, float] | tuple[float, ...]) -> float:
    """Radius (mm) of the sphere with the volume of ``voxels`` voxels of ``spacing_mm`` (mm per voxel, any axis order).

    With ``spacing_mm = (1, 1, 1)`` the radius is in voxels. The equivalent diameter is twice this.
    """
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    return float((3 * voxels * voxel_ml * 1000 / (4 * math.pi)) ** (1 / 3))
