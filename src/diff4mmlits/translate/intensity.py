"""How a modality's intensities become the generators' [-1, 1] range, and back.

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

    def to_unit(self, array: np.ndarray) -> np.ndarray:
        """Intensities → float32 in [-1, 1] (clipped)."""
        lo, hi = self.bounds(array)
        unit = (np.asarray(array, dtype=np.float32) - lo) / (hi - lo) * 2.0 - 1.0
        return np.clip(unit, -1.0, 1.0).astype(np.float32)

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        """[-1, 1] → output units (HU for ``window``, the reference range for ``percentile``), float32."""
        lo, hi = self.reference_low, self.reference_high
        return ((np.asarray(unit, dtype=np.float32) + 1.0) * 0.5 * (hi - lo) + lo).astype(np.float32)

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


def intensity_map(mode: Mode, window_hu: tuple[float, float], percentiles: tuple[float, float]) -> IntensityMap:
    """The map a config asks for (before fitting)."""
    low, high = window_hu if mode == "window" else percentiles
    return IntensityMap(mode=mode, low=float(low), high=float(high))
