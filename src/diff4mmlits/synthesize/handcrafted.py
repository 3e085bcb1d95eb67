"""Baseline ``--method handcrafted``: tumors painted by a rule, after the idea of SyntheticTumors.

The same random masks as the diffusion painter; inside a tumor each phase gets the surrounding
liver's median HU plus a tumor-to-liver contrast plus a smooth noise texture, with softened edges.
Nothing is hard-coded about how tumors look: the contrast vector (all phases at once, so one
tumor's phases stay coherent) is that of a real tumor of the dataset, drawn at random from those
measured in the registered training cases, with a small jitter; the texture's standard deviation
is that real tumor's internal standard deviation in each phase.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from diff4mmlits import PHASES
from diff4mmlits.data.case import Case
from diff4mmlits.data.measures import sphere_radius_mm
from diff4mmlits.errors import InputError
from diff4mmlits.synthesize.config import SynthesizeConfig
from diff4mmlits.synthesize.contrast import TumorContrast, summarize_contrasts
from diff4mmlits.synthesize.painting import paint_tumors

log = logging.getLogger(__name__)

CONTRAST_JITTER = 0.15
"""Jitter of a drawn contrast, as a share of that phase's spread (std) over the real tumors."""
EDGE_SIGMA_VOX = 0.7
"""Softening of the tumor's edge (Gaussian σ of the mask, voxels)."""


@dataclass
class HandcraftedPainter:
    """Paint tumors whose per-phase contrast and texture come from the dataset's real tumors.

    Attributes:
        real_tumors: measured real tumors (see :func:`~diff4mmlits.synthesize.contrast.measure_tumor_contrasts`).
        config: the ``synthesize`` section (tumor masks, feather, texture smoothing).
        crop_vox: crop edge, voxels (the diffusion model's, so that both methods draw the same tumors).
        close_vox, dilate_vox: the mask's closing and dilation.
    """

    real_tumors: list[TumorContrast]
    config: SynthesizeConfig
    crop_vox: int
    close_vox: int = 5
    dilate_vox: int = 3

    def __post_init__(self) -> None:
        if not self.real_tumors:
            raise InputError("the handcrafted painter needs real tumors to measure contrasts from; the training cases have none")
        self._summary = summarize_contrasts(self.real_tumors)

    def paint(self, normal: Case, rng: np.random.Generator) -> Case:
        """A synthetic case: ``normal``'s phases with new tumors, label 0/1/2 on the same grid."""
        return self.paint_with_provenance(normal, rng)[0]

    def paint_with_provenance(self, normal: Case, rng: np.random.Generator) -> tuple[Case, dict[str, Any]]:
        largest = max(sphere_radius_mm(t.volume_ml) for t in self.real_tumors)
        case, provenance = paint_tumors(
            normal, rng, self.paint_crop, self.config.tumor, self.crop_vox, self.config.feather_mm,
            self.close_vox, self.dilate_vox, largest,
        )
        return case, {"method": "handcrafted", **provenance, "real_tumors": len(self.real_tumors)}

    def paint_crop(self, crops_hu: dict[str, np.ndarray], condition: np.ndarray, tumor: np.ndarray,
                   liver: np.ndarray, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Liver reference + a real tumor's contrast + texture, inside the softened tumor mask (HU crops)."""
        reference = int(rng.integers(len(self.real_tumors)))
        source = self.real_tumors[reference]
        soft = ndimage.gaussian_filter(tumor.astype(np.float32), EDGE_SIGMA_VOX)
        structure = np.ones((3, 3, 3), bool)
        ring = ndimage.binary_dilation(condition, structure, iterations=2) & ~condition & liver
        painted, contrasts = {}, {}
        for name in PHASES:
            if name not in crops_hu:
                continue
            crop = crops_hu[name]
            around = crop[ring] if ring.sum() >= 4 else crop[liver & ~condition]
            liver_hu = float(np.median(around)) if around.size else float(np.median(crop[tumor]))
            spread = self._summary.get(name, {}).get("std", 0.0)
            mean = self._summary.get(name, {}).get("mean", 0.0)
            contrast = source.contrast_hu.get(name, mean) + CONTRAST_JITTER * spread * float(rng.standard_normal())
            texture = ndimage.gaussian_filter(rng.standard_normal(crop.shape).astype(np.float32), self.config.texture_sigma_vox)
            texture *= source.std_hu.get(name, 0.0) / max(float(texture.std()), 1e-6)
            painted[name] = ((1.0 - soft) * crop + soft * (liver_hu + contrast + texture)).astype(np.float32)
            contrasts[name] = round(contrast, 2)
        return painted, {"contrast_hu": contrasts, "reference_tumor": f"{source.case_id}#{reference}"}
