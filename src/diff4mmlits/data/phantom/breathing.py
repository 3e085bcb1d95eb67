"""Breathing motion between phases, as a smooth displacement field in ITK's resampling convention.

For a point ``p`` of the PVP (anatomy) frame, ``d(p)`` (mm, ``(z, y, x)`` components) is such
that ``p + d(p)`` is where that piece of anatomy lies when the phase is acquired. It is the sum of

- a small rigid shift of the whole patient (±3 mm, table and posture),
- a cranio-caudal movement ``c · w(y)`` with an anterior drift ``0.15–0.3 · c · w(y)``; the weight
  ``w`` is 1 for the viscera and falls smoothly to ~0.3 behind the front of the spine (the spine
  and back muscles move less: a smooth shear, as when organs slide along the back wall),
- a smooth random deformation of up to ~2.5 mm (long-wavelength sinusoids),
- **sliding** (issue 17): the cranio-caudal term also falls to the floor outside the abdominal
  cavity (an ellipse inside the body wall) over a few mm, so the viscera slide along the body wall
  and diaphragm instead of dragging it along,
- **more motion at the domes than at the hilum**: the cranio-caudal term is scaled by
  ``1 + g · tanh((z − z_liver) / L)``, so the cranial liver moves (and stretches) more than the
  caudal liver.

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
DOME_GAIN: tuple[float, float] = (0.2, 0.45)
"""Range of g: the domes move up to 1.45× the liver centre's cranio-caudal motion, the tip 0.55×."""
SLIDE_WIDTH_MM: tuple[float, float] = (5.0, 8.0)
"""Range of the sliding layer's width at the cavity wall, mm (sharper would not be invertible by
the fixed-point iteration of :meth:`Breathing.to_anatomy`)."""


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
    dome_gain: float = 0.0  # g: the cranial liver moves (1 + g)×, the caudal (1 − g)× the centre's
    dome_z_mm: float = 0.0  # z of the liver centre
    dome_length_mm: float = 60.0  # L
    cavity_radii_yx: tuple[float, float] = (np.inf, np.inf)  # the abdominal cavity's ellipse (body centred), mm
    slide_width_mm: float = 5.0  # width of the sliding layer at the cavity wall

    def weight(self, y: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
        """``w(y, x)``: 1 for the viscera, ``floor`` behind the hinge (logistic in ``y`` of width
        ``hinge_width_mm``) and outside the abdominal cavity (logistic of width ``slide_width_mm``)."""
        dtype = y.dtype.type if isinstance(y, np.ndarray) and y.dtype == np.float32 else np.float64
        step = np.exp((y - dtype(self.hinge_y_mm)) / dtype(self.hinge_width_mm))
        step += dtype(1.0)
        inside = dtype(1.0) / step
        if x is not None and np.isfinite(self.cavity_radii_yx[0]):
            ry, rx = (dtype(r) for r in self.cavity_radii_yx)
            radius = np.sqrt((y / ry) ** 2 + (x / rx) ** 2)
            outside = (radius - dtype(1.0)) * min(ry, rx) / dtype(self.slide_width_mm)
            inside = inside / (dtype(1.0) + np.exp(np.clip(outside, -60, 60)))
        return dtype(self.floor) + dtype(1.0 - self.floor) * inside

    def dome_scale(self, z: np.ndarray) -> np.ndarray:
        """``1 + g · tanh((z − z_liver) / L)``: more cranio-caudal motion at the domes than at the hilum."""
        dtype = z.dtype.type if isinstance(z, np.ndarray) and z.dtype == np.float32 else np.float64
        if self.dome_gain == 0.0:
            return np.ones_like(z)
        return dtype(1.0) + dtype(self.dome_gain) * np.tanh((z - dtype(self.dome_z_mm)) / dtype(self.dome_length_mm))

    def displacement(self, points: np.ndarray) -> np.ndarray:
        """``d(p)`` at ``(3, ...)`` anatomy-frame points (mm): ``(3, ...)`` (z, y, x components), in the
        points' dtype (float32 or float64)."""
        points = np.asarray(points)
        if points.dtype != np.float32:
            points = points.astype(np.float64)
        dtype = points.dtype.type
        moving = dtype(self.craniocaudal_mm) * self.weight(points[1], points[2]) * self.dome_scale(points[0])
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


def sample_breathing(rng: np.random.Generator, liver_centre_mm: np.ndarray, spine_front_y_mm: float,
                     motion_rng: np.random.Generator | None = None,
                     cavity_radii_yx: tuple[float, float] | None = None) -> Breathing:
    """Draw one phase's breathing so that the liver centre moves 5–15 mm cranio-caudally (either way).

    ``motion_rng`` draws the sliding layer and the dome gain (a stream of its own, so the other
    draws of a case stay as they were); without it, or without ``cavity_radii_yx``, neither."""
    smooth = tuple(random_fourier_field(rng, modes=3, wavelength_mm=(120, 250), amplitude=rng.uniform(1.0, 2.5))
                   for _ in range(3))
    breathing = Breathing(
        shift_mm=rng.uniform(-3, 3, size=3), craniocaudal_mm=0.0, anterior_ratio=rng.uniform(0.15, 0.3),
        hinge_y_mm=spine_front_y_mm + rng.uniform(-5, 10), hinge_width_mm=rng.uniform(10, 16), floor=rng.uniform(0.2, 0.45),
        smooth=smooth,  # type: ignore[arg-type]
    )
    target = rng.uniform(*CRANIOCAUDAL_MM) * rng.choice([-1.0, 1.0])
    centre = np.asarray(liver_centre_mm, dtype=np.float64).reshape(3, 1)
    if motion_rng is not None and cavity_radii_yx is not None:
        breathing = Breathing(**{**breathing.__dict__, "dome_gain": float(motion_rng.uniform(*DOME_GAIN)),
                                 "dome_z_mm": float(centre[0, 0]), "dome_length_mm": float(motion_rng.uniform(40, 80)),
                                 "cavity_radii_yx": tuple(float(r) for r in cavity_radii_yx),
                                 "slide_width_mm": float(motion_rng.uniform(*SLIDE_WIDTH_MM))})
    rest = float(breathing.displacement(centre)[0, 0])  # z movement without the breathing term
    craniocaudal = (target - rest) / float(breathing.weight(centre[1], centre[2])[0])
    return Breathing(**{**breathing.__dict__, "craniocaudal_mm": craniocaudal})
