"""Quality control of synthetic tumors (issue 14, after FreeTumor's and MAISI's filters).

Each painted tumor is checked in its crop, after the blend, before it joins the case:

* **contrast** — its tumor-to-liver contrast per phase (measured as for the real tumors:
  :func:`~diff4mmlits.synthesize.contrast.ring_contrast`) must lie within the real tumors' range
  of that phase, widened by ``margin`` times the real spread (at least :data:`MIN_SPREAD_HU`). A painter that draws a hyper-dense
  cyst or a tumor the liver swallows is caught here.
* **seam** — the painted crop must not shift the liver around the tumor: the mean of
  (shown − normal) over the tumor-free liver within one voxel of the edge of the repainted region
  (where the blend weight reaches 1), HU, must stay within ``seam_hu``. A background offset there
  shows as a halo around the tumor.

A rejected painting is tried again with fresh noise; the share rejected goes to the provenance
and to ``synthetic/summary.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from diff4mmlits.synthesize.config import SynthesizeConfig
from diff4mmlits.synthesize.contrast import TumorContrast, ring_contrast, summarize_contrasts

MIN_SPREAD_HU = 10.0
"""The spread the range is widened by is at least this (HU): a handful of alike real tumors must not
make the range narrower than measurement noise."""


@dataclass(frozen=True)
class QualityVerdict:
    """The checks of one painted tumor.

    Attributes:
        accepted: both checks passed.
        contrast_hu: phase → measured tumor-to-liver contrast (empty when too small to measure).
        outside: the phases whose contrast fell outside the allowed range.
        seam_hu: mean (painted − normal) in the feathered liver band, HU.
    """

    accepted: bool
    contrast_hu: dict[str, float]
    outside: tuple[str, ...]
    seam_hu: float

    def to_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "contrast_hu": {k: round(v, 2) for k, v in self.contrast_hu.items()},
                "outside": list(self.outside), "seam_hu": round(self.seam_hu, 2)}


@dataclass(frozen=True)
class TumorQualityControl:
    """Allowed contrast ranges (from real tumors) and the seam limit.

    Attributes:
        ranges_hu: phase → ``(lowest, highest)`` allowed contrast, HU.
        seam_hu: the largest allowed mean offset of the liver in the feathered band, HU.
    """

    ranges_hu: dict[str, tuple[float, float]]
    seam_hu: float

    @classmethod
    def from_real(cls, real: list[TumorContrast], margin: float, seam_hu: float) -> TumorQualityControl:
        """Ranges = the real tumors' [min, max] per phase widened by ``margin`` × their spread (std, at least :data:`MIN_SPREAD_HU`)."""
        summary = summarize_contrasts(real)
        ranges = {}
        for phase, stats in summary.items():
            values = [t.contrast_hu[phase] for t in real if phase in t.contrast_hu]
            spread = max(stats["std"], MIN_SPREAD_HU)
            ranges[phase] = (min(values) - margin * spread, max(values) + margin * spread)
        return cls(ranges_hu=ranges, seam_hu=seam_hu)

    def check(self, blended: dict[str, np.ndarray], normal: dict[str, np.ndarray], tumor: np.ndarray,
              liver: np.ndarray, weight: np.ndarray) -> QualityVerdict:
        """Check one painted tumor in its crop.

        Args:
            blended: phase → the crop after the blend, HU ``(c, c, c)``.
            normal: phase → the crop of the normal CT, HU.
            tumor: boolean, the tumor's mask in the crop.
            liver: boolean, the liver in the crop.
            weight: the blend weight ``(c, c, c)`` in [0, 1].
        """
        measured = ring_contrast(blended, tumor, liver & ~tumor)
        contrast = measured[0] if measured else {}
        outside = tuple(p for p, c in contrast.items() if p in self.ranges_hu
                        and not self.ranges_hu[p][0] <= c <= self.ranges_hu[p][1])
        repainted = weight >= 1.0
        structure = np.ones((3, 3, 3), bool)
        edge = ndimage.binary_dilation(repainted, structure) & ~ndimage.binary_erosion(repainted, structure)
        band = edge & liver & ~ndimage.binary_dilation(tumor, structure)
        seam = max(abs(float(np.mean(blended[p][band] - normal[p][band]))) for p in blended) if band.sum() >= 8 else 0.0
        return QualityVerdict(accepted=not outside and seam <= self.seam_hu, contrast_hu=contrast, outside=outside,
                              seam_hu=seam)


def quality_control(config: SynthesizeConfig, real: list[TumorContrast]) -> TumorQualityControl | None:
    """The checks the ``synthesize`` section asks for (``None`` when off or no real tumor is known)."""
    if not config.quality_control or not real:
        return None
    return TumorQualityControl.from_real(real, config.quality_contrast_margin, config.quality_seam_hu)
