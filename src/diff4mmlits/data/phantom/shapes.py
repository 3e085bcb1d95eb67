"""Geometric primitives of the phantom, evaluated at arbitrary world points.

Every function takes ``points``: a ``(3, ...)`` float32 array of world positions in mm, rows
``(z, y, x)`` — the anatomy frame (the PVP grid's world). Shapes are implicit: a *level* below 1
(or a distance below a radius) is inside. :class:`Blocks` finds the sub-block of a (possibly
warped) point array that can reach a world bounding box, so that each organ is evaluated only near
itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def rotation_zyx(yaw_rad: float = 0.0, pitch_rad: float = 0.0, roll_rad: float = 0.0) -> np.ndarray:
    """A ``(3, 3)`` rotation acting on ``(z, y, x)`` vectors: yaw about z, pitch about y, roll about x."""
    cz, sz = np.cos(yaw_rad), np.sin(yaw_rad)
    cy, sy = np.cos(pitch_rad), np.sin(pitch_rad)
    cx, sx = np.cos(roll_rad), np.sin(roll_rad)
    about_z = np.array([[1, 0, 0], [0, cz, -sz], [0, sz, cz]])  # rotates the (y, x) plane
    about_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])  # rotates the (z, x) plane
    about_x = np.array([[cx, -sx, 0], [sx, cx, 0], [0, 0, 1]])  # rotates the (z, y) plane
    return about_z @ about_y @ about_x


def local_coordinates(points: np.ndarray, centre: np.ndarray, rotation: np.ndarray | None = None) -> np.ndarray:
    """``(3, ...)`` coordinates of ``points`` in a frame centred at ``centre`` (mm) and rotated by ``rotation``."""
    offset = points - np.asarray(centre, dtype=points.dtype).reshape((3,) + (1,) * (points.ndim - 1))
    if rotation is None or np.array_equal(rotation, np.eye(3)):
        return offset
    rotation = np.asarray(rotation, dtype=points.dtype)  # local = Rᵀ (p − c), written out: 9 multiply-adds
    return np.stack([rotation[0, i] * offset[0] + rotation[1, i] * offset[1] + rotation[2, i] * offset[2] for i in range(3)])


def ellipsoid_level(points: np.ndarray, centre: np.ndarray, radii_mm: np.ndarray, rotation: np.ndarray | None = None) -> np.ndarray:
    """``‖Rᵀ(p − c) / r‖``: below 1 inside the ellipsoid. Shape ``points.shape[1:]``."""
    local = local_coordinates(points, centre, rotation)
    radii = np.asarray(radii_mm, dtype=np.float32).reshape((3,) + (1,) * (points.ndim - 1))
    return np.sqrt(np.sum((local / radii) ** 2, axis=0))


def ellipse_level_yx(points: np.ndarray, centre_yx: tuple[float, float], radii_yx: tuple[float, float]) -> np.ndarray:
    """An elliptic cylinder along z: ``‖((y, x) − c) / r‖``, below 1 inside."""
    dy = (points[1] - centre_yx[0]) / radii_yx[0]
    dx = (points[2] - centre_yx[1]) / radii_yx[1]
    return np.sqrt(dy * dy + dx * dx)


def segment_distance(points: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance (mm) from each point to the segment ``start → end`` and the position ``t ∈ [0, 1]`` along it."""
    start = np.asarray(start, dtype=np.float32).reshape((3,) + (1,) * (points.ndim - 1))
    axis = np.asarray(end, dtype=np.float32).reshape(start.shape) - start
    offset = points - start
    t = np.clip(np.sum(offset * axis, axis=0) / max(float(np.sum(axis * axis)), 1e-6), 0.0, 1.0)
    nearest = offset - axis * t[None]
    return np.sqrt(np.sum(nearest * nearest, axis=0)), t


def smooth_min(a: np.ndarray, b: np.ndarray, k_mm: float) -> np.ndarray:
    """Smooth union of two signed distances (polynomial smooth minimum, blend width ``k_mm``)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k_mm, 0.0, 1.0)
    return b + (a - b) * h - k_mm * h * (1.0 - h)


@dataclass(frozen=True)
class FourierField:
    """A smooth random scalar field: ``Σ aₖ sin(kₖ · p + φₖ)``; wave vectors in rad/mm, amplitudes in the field's unit."""

    wave_vectors: np.ndarray  # (K, 3), rad/mm, (z, y, x)
    phases: np.ndarray  # (K,)
    amplitudes: np.ndarray  # (K,)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """The field at ``(3, ...)`` points, in the points' float dtype (float32 unless float64 is given)."""
        dtype = points.dtype if points.dtype == np.float64 else np.float32
        out = np.zeros(points.shape[1:], dtype=dtype)
        for k, phase, amplitude in zip(self.wave_vectors.astype(dtype), self.phases.astype(dtype), self.amplitudes.astype(dtype)):
            argument = k[0] * points[0] + k[1] * points[1] + k[2] * points[2] + phase
            np.sin(argument, out=argument)
            argument *= amplitude
            out += argument
        return out

    def max_gradient(self) -> float:
        """An upper bound of the field's gradient norm (unit per mm)."""
        return float(np.sum(np.abs(self.amplitudes) * np.linalg.norm(self.wave_vectors, axis=1)))


def random_fourier_field(rng: np.random.Generator, modes: int, wavelength_mm: tuple[float, float], amplitude: float) -> FourierField:
    """``modes`` sinusoids with random directions, wavelengths in ``wavelength_mm`` and a total amplitude ``amplitude``."""
    directions = rng.normal(size=(modes, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    wavelengths = rng.uniform(*wavelength_mm, size=modes)
    weights = rng.uniform(0.5, 1.0, size=modes)
    return FourierField(
        wave_vectors=directions * (2 * np.pi / wavelengths)[:, None],
        phases=rng.uniform(0, 2 * np.pi, size=modes),
        amplitudes=amplitude * weights / weights.sum(),
    )


class Blocks:
    """Index sub-blocks of a ``(3, Z, Y, X)`` point array that can reach a world box.

    Per plane of each axis it keeps the range of that axis's world coordinate, so a box test is
    conservative (never misses a point) even when the points are warped by breathing.
    """

    def __init__(self, points: np.ndarray) -> None:
        self.ranges = []
        for axis in range(3):
            others = tuple(a for a in (0, 1, 2) if a != axis)
            values = points[axis]
            self.ranges.append((values.min(axis=others), values.max(axis=others)))

    def slices(self, low_mm: np.ndarray, high_mm: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Index slices covering every point inside ``[low_mm, high_mm]`` (z, y, x), or ``None``."""
        out = []
        for axis in range(3):
            lowest, highest = self.ranges[axis]
            hit = np.nonzero((highest >= low_mm[axis]) & (lowest <= high_mm[axis]))[0]
            if hit.size == 0:
                return None
            out.append(slice(int(hit[0]), int(hit[-1]) + 1))
        return tuple(out)  # type: ignore[return-value]
