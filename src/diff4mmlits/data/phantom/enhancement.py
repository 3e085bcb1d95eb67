"""Attenuation of each tissue in each phase (HU), with contrast timing that varies between cases.

Values follow the table of DESIGN.md ("The built-in phantom"). A contrast phase is a window in
time; each tissue has the HU it shows at the *early* and at the *late* end of that window, and a
case's timing ``τ`` (0 = early, 1 = late; outside [0, 1] for the second site's shifted timing)
picks a point in between. For NC, ``τ`` is the patient's own variation (e.g. a fattier liver).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diff4mmlits import PHASES
from diff4mmlits.data.phantom.anatomy import TISSUE_ID, TISSUES, Anatomy

TISSUE_HU: dict[str, dict[str, tuple[float, float]]] = {
    #                      NC (patient)    AP early→late   PVP early→late   DP early→late
    "air":               {"NC": (-1000, -1000), "AP": (-1000, -1000), "PVP": (-1000, -1000), "DP": (-1000, -1000)},
    "fat":               {"NC": (-110, -90), "AP": (-110, -90), "PVP": (-108, -88), "DP": (-108, -88)},
    "muscle":            {"NC": (40, 55), "AP": (45, 60), "PVP": (55, 65), "DP": (52, 62)},
    "bone_cortex":       {"NC": (700, 900), "AP": (700, 900), "PVP": (700, 900), "DP": (700, 900)},
    "bone_marrow":       {"NC": (200, 280), "AP": (205, 285), "PVP": (210, 290), "DP": (210, 290)},
    "spinal_canal":      {"NC": (10, 20), "AP": (10, 20), "PVP": (10, 20), "DP": (10, 20)},
    "intervertebral_disc": {"NC": (70, 90), "AP": (70, 90), "PVP": (72, 92), "DP": (72, 92)},
    "liver":             {"NC": (55, 65), "AP": (65, 80), "PVP": (100, 120), "DP": (100, 85)},
    "portal_branch":     {"NC": (38, 45), "AP": (95, 130), "PVP": (160, 185), "DP": (128, 118)},
    "hepatic_vein":      {"NC": (38, 45), "AP": (50, 70), "PVP": (140, 170), "DP": (130, 118)},
    "portal_vein":       {"NC": (38, 45), "AP": (100, 140), "PVP": (170, 200), "DP": (130, 120)},
    "aorta":             {"NC": (38, 45), "AP": (350, 250), "PVP": (180, 150), "DP": (130, 110)},
    "inferior_vena_cava": {"NC": (38, 45), "AP": (70, 100), "PVP": (140, 165), "DP": (125, 115)},
    "spleen":            {"NC": (45, 50), "AP": (100, 120), "PVP": (115, 125), "DP": (98, 92)},
    "kidney_cortex":     {"NC": (30, 40), "AP": (150, 200), "PVP": (180, 150), "DP": (125, 115)},
    "kidney_medulla":    {"NC": (30, 40), "AP": (70, 100), "PVP": (150, 175), "DP": (130, 150)},
    "gallbladder":       {"NC": (5, 20), "AP": (5, 20), "PVP": (5, 20), "DP": (5, 20)},
    "bowel_wall":        {"NC": (30, 40), "AP": (60, 80), "PVP": (80, 100), "DP": (70, 85)},
    "bowel_content":     {"NC": (10, 25), "AP": (10, 25), "PVP": (10, 25), "DP": (10, 25)},
    "gas":               {"NC": (-980, -900), "AP": (-980, -900), "PVP": (-980, -900), "DP": (-980, -900)},
}
"""Tissue → phase → (HU at the early end, HU at the late end of the phase's time window)."""

TEXTURE_HU: dict[str, dict[str, float]] = {
    "liver": {"NC": 2.0, "AP": 4.0, "PVP": 3.0, "DP": 2.0},
    "spleen": {"NC": 1.0, "AP": 22.0, "PVP": 3.0, "DP": 1.0},  # arciform enhancement in AP
}
"""Amplitude (HU) of the smooth texture of a tissue in each phase."""


@dataclass(frozen=True)
class Contrast:
    """One case's contrast timing: ``τ`` per phase (0 early, 1 late; NC: patient variation)."""

    timing: dict[str, float]

    def tissue_hu(self, tissue: str, phase: str) -> float:
        early, late = TISSUE_HU[tissue][phase]
        return float(early + self.timing[phase] * (late - early))

    def lookup(self, phase: str) -> np.ndarray:
        """``(256,)`` float32 HU by tissue id for ``phase`` (tumor ids hold the liver's value)."""
        table = np.full(256, self.tissue_hu("liver", phase), dtype=np.float32)
        for tissue_id, name in TISSUES.items():
            if name in TISSUE_HU:
                table[tissue_id] = self.tissue_hu(name, phase)
        return table


def sample_contrast(rng: np.random.Generator, timing_ranges: dict[str, tuple[float, float]]) -> Contrast:
    """Draw a case's timing: ``τ`` per phase uniformly from ``timing_ranges[phase]``."""
    return Contrast(timing={phase: float(rng.uniform(*timing_ranges[phase])) for phase in PHASES})


def clean_hu(tissue: np.ndarray, points: np.ndarray, anatomy: Anatomy, contrast: Contrast, phase: str) -> np.ndarray:
    """Noise-free HU ``(Z, Y, X)`` float32 of a tissue map drawn at world ``points`` ``(3, Z, Y, X)``.

    Textures are functions of the anatomy-frame points, so they move with the organs.
    """
    hu = contrast.lookup(phase)[tissue]
    for name, texture in (("liver", anatomy.liver_texture), ("spleen", anatomy.spleen_texture)):
        inside = tissue == TISSUE_ID[name]
        if inside.any():
            hu[inside] += np.float32(TEXTURE_HU[name][phase]) * texture(points[:, inside])
    return hu
