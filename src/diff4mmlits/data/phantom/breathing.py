"""Breathing motion between phases, as a smooth displacement field in ITK's resampling convention.

For a point ``p`` of the PVP (anatomy) frame, ``d(p)`` (mm, ``(z, y, x)`` components) is such
that ``p + d(p)`` is where that piece of anatomy lies when the phase is acquired. It is the sum of

- a small rigid shift of the whole patient (±3 mm, table and posture),
- a cranio-caudal movement ``c · w(y)`` with an anterior drift ``0.15–0.3 · c · w(y)``; the weight
  ``w`` is 1 for the viscera and falls smoothly to ~0.3 behind the front of the spine (the spine
  and back muscles move less: a smooth shear, as when organs slide along the back wall),
- a smooth random deformation of up to ~2.5 mm (long-wavelength sinusoids).

``c`` is chosen so that the liver's centre moves 5–15 mm cranio-caudally. Drawing a phase needs
the inverse map (phase point → anatomy point); :meth:`Breathing.to_anatomy` solves
``p + d(p) = q`` by fixed-point iteration, which converges because ``d`` changes by well under
1 mm per mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diff4mmlits.data.phantom.shapes import FourierField, random_fourier_field

CRANIOCAUDAL_MM: tuple[float, float] = (5.0, 15.0)
"""Range of the liver centre's cranio-caudal movement between the PVP and another phase."""


@dataclass(frozen=True)
class Breathing:
    """One phase's motion relative to PVP (all in mm, ``(z, y, x)`` order)."""

    shift_mm: np.ndarray  # (3,) rigid part
    craniocaudal_mm: float  # c: movement of the fully moving viscera along z
    anterior_ratio: float  # y movement per mm of z movement (same sign: inspiration → caudal and anterior)
    hinge_y_mm: float  # y where the weight is halfway between 1 and the floor
    hinge_width_mm: float
    floor: float  # weight behind the hinge (spine, back muscles)
    smooth: tuple[FourierField, FourierField, FourierField]  # z, y, x components (mm)

    def weight(self, y: np.ndarray) -> np.ndarray:
        """``w(y)``: 1 anteriorly, ``floor`` posteriorly, a logistic step of width ``hinge_width_mm``."""
        dtype = y.dtype.type if isinstance(y, np.ndarray) and y.dtype == np.float32 else np.float64
        step = np.exp((y - dtype(self.hinge_y_mm)) / dtype(self.hinge_width_mm))
        step += dtype(1.0)
        return dtype(self.floor) + dtype(1.0 - self.floor) / step

    def displacement(self, points: np.ndarray) -> np.ndarray:
        """``d(p)`` at ``(3, ...)`` anatomy-frame points (mm): ``(3, ...)`` (z, y, x components), in the
        points' dtype (float32 or float64)."""
        points = np.asarray(points)
        if points.dtype != np.float32:
            points = points.astype(np.float64)
        dtype = points.dtype.type
        moving = dtype(self.craniocaudal_mm) * self.weight(points[1])
        out = np.empty_like(points)
        for axis in range(3):
            out[axis] = self.smooth[axis](points)
            out[axis] += dtype(self.shift_mm[axis])
        out[0] += moving
        moving *= dtype(self.anterior_ratio)
        out[1] += moving
        return out

    def to_anatomy(self, phase_points: np.ndarray, tolerance_mm: float = 1e-3, max_iterations: int = 60) -> np.ndarray:
        """The anatomy-frame points ``p`` with ``p + d(p) = q`` for phase points ``q`` ``(3, ...)`` (mm).

        Computed in float32 (the points' precision is ~1e-5 mm); iterates until no point moves by
        more than ``tolerance_mm``.
        """
        phase_points = np.asarray(phase_points, dtype=np.float32)
        points = phase_points - self.displacement(phase_points)
        for _ in range(max_iterations):
            updated = phase_points - self.displacement(points)
            change = float(np.max(np.abs(updated - points))) if points.size else 0.0
            points = updated
            if change < tolerance_mm:
                break
        return points


def sample_breathing(rng: np.random.Generator, liver_centre_mm: np.ndarray, spine_front_y_mm: float) -> Breathing:
    """Draw one phase's breathing so that the liver centre moves 5–15 mm cranio-caudally (either way)."""
    smooth = tuple(random_fourier_field(rng, modes=3, wavelength_mm=(120, 250), amplitude=rng.uniform(1.0, 2.5))
                   for _ in range(3))
    breathing = Breathing(
        shift_mm=rng.uniform(-3, 3, size=3), craniocaudal_mm=0.0, anterior_ratio=rng.uniform(0.15, 0.3),
        hinge_y_mm=spine_front_y_mm + rng.uniform(-5, 10), hinge_width_mm=rng.uniform(10, 16), floor=rng.uniform(0.2, 0.45),
        smooth=smooth,  # type: ignore[arg-type]
    )
    target = rng.uniform(*CRANIOCAUDAL_MM) * rng.choice([-1.0, 1.0])
    centre = np.asarray(liver_centre_mm, dtype=np.float64).reshape(3, 1)
    rest = float(breathing.displacement(centre)[0, 0])  # z movement without the breathing term
    craniocaudal = (target - rest) / float(breathing.weight(centre[1])[0])
    return Breathing(**{**breathing.__dict__, "craniocaudal_mm": craniocaudal})
