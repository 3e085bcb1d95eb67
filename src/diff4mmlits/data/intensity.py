"""How a modality's intensities become the networks' [-1, 1] range, and back (HU ↔ [-1, 1]).

The one home of this formula: the inpainter (``window_map``, result clipped), the synthesizer's
autoencoder (``window_map`` with ``clip_input=True``: HU clipped to the window first) and the
translators use it.

Two rules:

- ``window`` (CT): a fixed window in HU, e.g. [-250, 350], mapped linearly onto [-1, 1] and
  clipped. The inverse is exact inside the window.
- ``percentile`` (MRI, whose units are arbitrary): each volume's own percentiles (default 0.5 and
  99.5) are mapped onto [-1, 1]. The inverse maps [-1, 1] onto the *median* low and high
  percentiles of the training volumes (``reference_low`` / ``reference_high``), so translated
  volumes come out in the target dataset's typical units.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np

Mode = Literal["window", "percentile"]


@dataclass(frozen=True)
class IntensityMap:
    """A modality's intensity normalisation.

    Attributes:
        mode: ``window`` or ``percentile``.
        low, high: the window in HU (``window``) or the percentiles, 0–100 (``percentile``).
        reference_low, reference_high: output units of -1 and +1 (``percentile``; fitted on the
            training volumes). For ``window`` they equal ``low`` / ``high``.
    """

    mode: Mode
    low: float
    high: float
    reference_low: float = 0.0
    reference_high: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in ("window", "percentile"):
            raise ValueError(f"intensity mode must be window or percentile, got {self.mode!r}")
        if not self.high > self.low:
            raise ValueError(f"intensity range ({self.low}, {self.high}) is empty")
        if self.mode == "window":
            object.__setattr__(self, "reference_low", float(self.low))
            object.__setattr__(self, "reference_high", float(self.high))

    def bounds(self, array: np.ndarray) -> tuple[float, float]:
        """The input values mapped to -1 and +1 for this array."""
        if self.mode == "window":
            return float(self.low), float(self.high)
        lo, hi = np.percentile(array, [self.low, self.high])
        return float(lo), float(max(hi, lo + 1e-6))

    def to_unit(self, array: np.ndarray, clip_input: bool = False) -> np.ndarray:
        """Intensities (any shape) → float32 in [-1, 1], same shape.

        By default the mapped values are clipped to [-1, 1]; with ``clip_input`` the input is
        clipped to the bounds first and then mapped (the synthesizer's autoencoder rule). The two
        agree inside the bounds; outside them the first gives exactly ±1, the second the rounded
        image of the bound.
        """
        lo, hi = self.bounds(array)
        values = np.asarray(array, dtype=np.float32)
        if clip_input:
            return (np.clip(values, lo, hi) - lo) / (hi - lo) * 2.0 - 1.0
        unit = (values - lo) / (hi - lo) * 2.0 - 1.0
        return np.clip(unit, -1.0, 1.0).astype(np.float32)

    def from_unit(self, unit: np.ndarray, clip: bool = False) -> np.ndarray:
        """[-1, 1] → output units (HU for ``window``, the reference range for ``percentile``), float32, same shape.

        With ``clip`` the input is clipped to [-1, 1] first.
        """
        lo, hi = self.reference_low, self.reference_high
        values = np.asarray(unit, dtype=np.float32)
        if clip:
            values = np.clip(values, -1.0, 1.0)
        return ((values + 1.0) * 0.5 * (hi - lo) + lo).astype(np.float32)

    def fitted(self, arrays: Iterable[np.ndarray]) -> IntensityMap:
        """For ``percentile``: set the reference range to the median percentiles of ``arrays``."""
        if self.mode == "window":
            return self
        bounds = np.array([self.bounds(a) for a in arrays], dtype=np.float64)
        if bounds.size == 0:
            return self
        return replace(self, reference_low=float(np.median(bounds[:, 0])), reference_high=float(np.median(bounds[:, 1])))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> IntensityMap:
        return cls(**{key: values[key] for key in ("mode", "low", "high", "reference_low", "reference_high")})


def window_map(window_hu: tuple[float, float]) -> IntensityMap:
    """The CT map of a fixed HU window ``(low, high)``: HU ↔ [-1, 1]."""
    low, high = window_hu
    return IntensityMap(mode="window", low=float(low), high=float(high))


def intensity_map(mode: Mode, window_hu: tuple[float, float], percentiles: tuple[float, float]) -> IntensityMap:
    """The map a config asks for (before fitting)."""
    low, high = window_hu if mode == "window" else percentiles
    return IntensityMap(mode=mode, low=float(low), high=float(high))
