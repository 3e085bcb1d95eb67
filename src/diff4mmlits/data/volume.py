"""`Volume`: a 3D array with its geometry, in one stated axis order.

Axis order everywhere in diff4mmlits is ``(z, y, x)`` — the numpy order of a CT stack. Spacing,
origin and the direction's columns follow the same order. Only :mod:`diff4mmlits.data.io` knows
that ITK and SimpleITK use ``(x, y, z)``.

World coordinates of voxel index ``i`` (a ``(z, y, x)`` triple)::

    world_zyx = origin_mm + direction @ (spacing_mm * i)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from diff4mmlits.errors import InputError

GEOMETRY_TOLERANCE_MM = 1e-3
"""Two grids are the same when spacing and origin agree to this many mm (direction to 1e-4)."""

MAX_SPACING_MM = 20.0
"""Voxel spacing above this is absurd for CT."""
MIN_SPACING_MM = 0.01
"""Voxel spacing below this is absurd for CT (a micrometre header, or one in metres read as mm)."""


@dataclass(frozen=True)
class Volume:
    """A 3D image or label map with its geometry.

    Attributes:
        array: ``(z, y, x)``; Hounsfield units for images, label ids for labels.
        spacing_mm: voxel size along each array axis, mm.
        origin_mm: world position of voxel ``(0, 0, 0)`` in mm, axes in the same (z, y, x) order.
        direction: ``(3, 3)``; column ``j`` is the world direction of array axis ``j``.
        kind: ``"image"`` or ``"label"``; picks the interpolation (labels are always nearest).
    """

    array: np.ndarray
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    kind: Literal["image", "label"] = "image"

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise InputError(f"a volume must be 3D, got an array of shape {self.array.shape}")
        object.__setattr__(self, "spacing_mm", tuple(float(s) for s in self.spacing_mm))
        object.__setattr__(self, "origin_mm", tuple(float(o) for o in self.origin_mm))
        object.__setattr__(self, "direction", np.asarray(self.direction, dtype=np.float64).reshape(3, 3))
        if self.kind not in ("image", "label"):
            raise ValueError(f"kind must be 'image' or 'label', got {self.kind!r}")

    # --- geometry -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (cm³)."""
        return float(np.prod(self.spacing_mm)) / 1000.0

    @property
    def affine_zyx(self) -> np.ndarray:
        """4×4 matrix mapping homogeneous (z, y, x) voxel indices to (z, y, x) world mm."""
        affine = np.eye(4)
        affine[:3, :3] = self.direction * np.asarray(self.spacing_mm)[None, :]
        affine[:3, 3] = self.origin_mm
        return affine

    def index_to_world(self, index_zyx: np.ndarray) -> np.ndarray:
        """Map ``(..., 3)`` voxel indices (z, y, x) to world points (z, y, x) in mm."""
        index_zyx = np.asarray(index_zyx, dtype=np.float64)
        return index_zyx @ (self.direction * np.asarray(self.spacing_mm)[None, :]).T + np.asarray(self.origin_mm)

    def world_to_index(self, world_zyx: np.ndarray) -> np.ndarray:
        """Map ``(..., 3)`` world points (z, y, x, mm) to continuous voxel indices (z, y, x)."""
        world_zyx = np.asarray(world_zyx, dtype=np.float64)
        matrix = self.direction * np.asarray(self.spacing_mm)[None, :]
        return (world_zyx - np.asarray(self.origin_mm)) @ np.linalg.inv(matrix).T

    def world_bounds_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounding box (min, max) of the voxel centres in world (z, y, x) mm."""
        corners = np.array(np.meshgrid(*[[0, n - 1] for n in self.shape], indexing="ij")).reshape(3, -1).T
        world = self.index_to_world(corners)
        return world.min(axis=0), world.max(axis=0)

    def same_grid(self, other: Volume, tolerance_mm: float = GEOMETRY_TOLERANCE_MM) -> bool:
        return grid_mismatch(self, other, tolerance_mm) is None

    # --- copies ---------------------------------------------------------------------------
    def with_array(self, array: np.ndarray, kind: Literal["image", "label"] | None = None) -> Volume:
        """The same grid holding another array of the same shape."""
        if tuple(array.shape) != self.shape:
            raise ValueError(f"array shape {array.shape} differs from the grid shape {self.shape}")
        return replace(self, array=array, kind=kind or self.kind)


def grid_mismatch(a: Volume, b: Volume, tolerance_mm: float = GEOMETRY_TOLERANCE_MM) -> str | None:
    """Describe the first difference between two grids, or ``None`` when they are the same."""
    if a.shape != b.shape:
        return f"shape (z, y, x) {a.shape} differs from {b.shape}"
    if not np.allclose(a.spacing_mm, b.spacing_mm, atol=tolerance_mm):
        return (f"spacing (z, y, x) {_fmt(a.spacing_mm)} mm differs from {_fmt(b.spacing_mm)} mm (by more than "
                f"{tolerance_mm:g} mm)")
    if not np.allclose(a.origin_mm, b.origin_mm, atol=tolerance_mm):
        return (f"origin (z, y, x) {_fmt(a.origin_mm)} mm differs from {_fmt(b.origin_mm)} mm (by more than "
                f"{tolerance_mm:g} mm)")
    if not np.allclose(a.direction, b.direction, atol=1e-4):
        return f"direction {np.round(a.direction, 4).tolist()} differs from {np.round(b.direction, 4).tolist()}"
    return None


def require_same_grid(fixed: Volume, moving: Volume, what: str, hint: str = "") -> None:
    """Raise :class:`InputError` naming ``what`` (e.g. ``"case_07/AP vs PVP"``) when grids differ."""
    problem = grid_mismatch(moving, fixed)
    if problem is not None:
        suffix = f"; {hint}" if hint else ""
        raise InputError(f"{what}: {problem}{suffix}")


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
