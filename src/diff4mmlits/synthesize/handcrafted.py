"""Baseline ``--method handcrafted``: tumors painted by a rule, after the idea of SyntheticTumors.

The same random masks as the diffusion painter; inside a tumor each phase gets the surrounding
liver's median HU plus a tumor-to-liver contrast plus a smooth noise texture, with softened edges.
Nothing is hard-coded about how tumors look: the contrast vector (all phases at once, so one
tumor's phases stay coherent) is the profile drawn with the tumor's shape from a real tumor of the
dataset (:func:`~diff4mmlits.synthesize.tumor_masks.sample_tumor_params`, with its jitter); the
texture's standard deviation is, per phase, that of the real tumor nearest to that profile.
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
from diff4mmlits.synthesize.quality import quality_control

log = logging.getLogger(__name__)

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
            self.close_vox, self.dilate_vox, largest, real_tumors=self.real_tumors,
            quality=quality_control(self.config, self.real_tumors), retries=self.config.quality_retries,
            profile_hu=self.config.profile_hu, calibrate=True, calibrate_edge=self.config.calibrate_edge,
        )
        return case, {"method": "handcrafted", "calibrate_edge": self.config.calibrate_edge, **provenance, "real_tumors": len(self.real_tumors)}

    def paint_crop(self, crops_hu: dict[str, np.ndarray], condition: np.ndarray, tumor: np.ndarray,
                   liver: np.ndarray, rng: np.random.Generator, profile_hu: dict[str, float] | None = None,
                   ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Liver reference + the drawn contrast + texture, inside the softened tumor mask (HU crops).

        Without a drawn profile (``profile_hu`` None) a random real tumor's is taken.
        """
        if profile_hu is None:
            profile_hu = self.real_tumors[int(rng.integers(len(self.real_tumors)))].contrast_hu
        texture_source = self._nearest(profile_hu)
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
            contrast = float(profile_hu.get(name, self._summary.get(name, {}).get("mean", 0.0)))
            texture = ndimage.gaussian_filter(rng.standard_normal(crop.shape).astype(np.float32), self.config.texture_sigma_vox)
            texture *= texture_source.std_hu.get(name, 0.0) / max(float(texture.std()), 1e-6)
            painted[name] = ((1.0 - soft) * crop + soft * (liver_hu + contrast + texture)).astype(np.float32)
            contrasts[name] = round(contrast, 2)
        return painted, {"contrast_hu": contrasts, "texture_tumor": f"{texture_source.case_id}@{texture_source.centre_vox}"}

    def _nearest(self, profile_hu: dict[str, float]) -> TumorContrast:
        """The real tumor whose contrast vector is nearest to ``profile_hu`` (phases both have)."""
        def distance(tumor: TumorContrast) -> float:
            shared = [p for p in profile_hu if p in tumor.contrast_hu]
            return float(sum((profile_hu[p] - tumor.contrast_hu[p]) ** 2 for p in shared)) if shared else float("inf")
        return min(self.real_tumors, key=distance)
