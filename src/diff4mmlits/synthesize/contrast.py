"""Tumor-to-liver contrast per phase: what the real tumors of a dataset look like, in HU.

For each connected tumor of a case's label (26-connectivity) and each phase: the mean HU of the
tumor's core (the component eroded by one voxel when that leaves enough voxels) minus the mean HU
of the liver in a ring 1–3 voxels around the tumor. Used by the handcrafted baseline (its
contrasts are drawn from these) and by the benchmark (real against synthetic tumors).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from diff4mmlits import LABEL_TUMOR, PHASES
from diff4mmlits.data.case import Case

RING_VOX = (1, 3)
"""Inner and outer distance (voxels, dilation steps) of the liver ring around a tumor."""
MIN_VOXELS = 4
"""Tumors and rings smaller than this are skipped (too few voxels for a mean)."""


@dataclass(frozen=True)
class TumorContrast:
    """One tumor's appearance.

    Attributes:
        case_id: the case it belongs to.
        voxels: its size, voxels.
        volume_ml: its volume, mL.
        centre_vox: centroid ``(z, y, x)``, voxel indices.
        contrast_hu: phase → mean(tumor core) − mean(liver ring), HU.
        std_hu: phase → standard deviation of the tumor core, HU (its texture and noise).
    """

    case_id: str
    voxels: int
    volume_ml: float
    centre_vox: tuple[float, float, float]
    contrast_hu: dict[str, float]
    std_hu: dict[str, float]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TumorContrast:
        return cls(
            case_id=str(data["case_id"]), voxels=int(data["voxels"]), volume_ml=float(data["volume_ml"]),
            centre_vox=tuple(data["centre_vox"]),  # type: ignore[arg-type]
            contrast_hu={k: float(v) for k, v in data["contrast_hu"].items()},
            std_hu={k: float(v) for k, v in data["std_hu"].items()},
        )

    def vector(self, phases: tuple[str, ...] = PHASES) -> np.ndarray:
        """The contrast per phase in ``phases`` order (NaN where the phase is missing)."""
        return np.array([self.contrast_hu.get(p, np.nan) for p in phases])


def measure_tumor_contrasts(case: Case, tumor: np.ndarray | None = None) -> list[TumorContrast]:
    """The contrast of every tumor of a registered case (label 2, or the given ``tumor`` mask)."""
    case.require_registered()
    label = case.label.array if case.label is not None else None
    if label is None:
        return []
    tumor = (label == LABEL_TUMOR) if tumor is None else np.asarray(tumor, bool)
    liver_only = (label > 0) & ~tumor
    structure = np.ones((3, 3, 3), bool)
    components, count = ndimage.label(tumor, structure=structure)
    results = []
    voxel_ml = case.annotated.voxel_volume_ml
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        pad = RING_VOX[1] + 1
        grown = tuple(slice(max(s.start - pad, 0), min(s.stop + pad, n)) for s, n in zip(box, tumor.shape))
        component = components[grown] == index
        if component.sum() < MIN_VOXELS:
            continue
        core = ndimage.binary_erosion(component, structure)
        core = core if core.sum() >= MIN_VOXELS else component
        inner = ndimage.binary_dilation(component, structure, iterations=RING_VOX[0])
        outer = ndimage.binary_dilation(component, structure, iterations=RING_VOX[1])
        ring = outer & ~inner & liver_only[grown]
        if ring.sum() < MIN_VOXELS:
            continue
        contrast, std = {}, {}
        for name, volume in case.phases.items():
            values = volume.array[grown].astype(np.float64)
            contrast[name] = float(values[core].mean() - values[ring].mean())
            std[name] = float(values[core].std())
        centre = np.argwhere(component).mean(axis=0) + [s.start for s in grown]
        results.append(TumorContrast(
            case_id=case.case_id, voxels=int(component.sum()), volume_ml=float(component.sum() * voxel_ml),
            centre_vox=tuple(float(c) for c in centre), contrast_hu=contrast, std_hu=std,  # type: ignore[arg-type]
        ))
    return results


def summarize_contrasts(tumors: list[TumorContrast], phases: tuple[str, ...] = PHASES) -> dict[str, dict[str, float]]:
    """Per phase: ``mean``, ``std`` of the tumors' contrast (HU) and ``count``."""
    summary = {}
    for phase in phases:
        values = np.array([t.contrast_hu[phase] for t in tumors if phase in t.contrast_hu])
        if len(values):
            summary[phase] = {"mean": float(values.mean()), "std": float(values.std()), "count": int(len(values))}
    return summary

