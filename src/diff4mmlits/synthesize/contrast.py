"""Tumor-to-liver contrast per phase: what the real tumors of a dataset look like, in HU.

For each connected tumor of a case's label (26-connectivity) and each phase: the mean HU of the
tumor's core (the component eroded by one voxel when that leaves enough voxels) minus the mean HU
of the liver in a ring 1–3 voxels around the tumor. With it, each tumor's shape: the semi-axes of
the ellipsoid with the same second moments (mm). These measurements are the dataset's own
description of its tumors: the painters draw a real tumor's shape and enhancement profile from
them (issue 14), quality control checks a painted tumor against their range, and the benchmark
compares real and synthetic tumors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from diff4mmlits import LABEL_TUMOR, PHASES
from diff4mmlits.data.case import Case
from diff4mmlits.synthesize.blend import noise_sigma_hu

RING_VOX = (1, 3)
"""Inner and outer distance (voxels, dilation steps) of the liver ring around a tumor."""
MIN_VOXELS = 4
"""Tumors and rings smaller than this are skipped (too few voxels for a mean)."""
NOISE_RING_VOX = (2, 6)
"""Inner and outer distance (voxels) of the liver around a tumor its voxel noise is compared with
(wider than ``RING_VOX``: the noise estimate erodes its region)."""
NOISE_MIN_VOXELS = 27
"""Tumors smaller than this get no noise ratio (too few voxels once eroded)."""


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
        semi_axes_mm: semi-axes of the ellipsoid with the tumor's second moments, largest first, mm
            (``None`` in records written before it was measured).
        noise_ratio: phase → the tumor's voxel noise over that of the liver 2–6 voxels around it
            (:func:`~diff4mmlits.synthesize.blend.noise_sigma_hu`, both; phases too small to measure
            left out; ``None`` in records written before it was measured).
        edge_fraction: ``{"edge": f, "outside": g}``, the share of the core's contrast shown by the
            tumor's outermost voxel layer and by the liver layer just outside it
            (:func:`edge_fraction`; ``None`` for a tumor without a core, or in older records).
    """

    case_id: str
    voxels: int
    volume_ml: float
    centre_vox: tuple[float, float, float]
    contrast_hu: dict[str, float]
    std_hu: dict[str, float]
    semi_axes_mm: tuple[float, float, float] | None = None
    noise_ratio: dict[str, float] | None = None
    edge_fraction: dict[str, float] | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TumorContrast:
        return cls(
            case_id=str(data["case_id"]), voxels=int(data["voxels"]), volume_ml=float(data["volume_ml"]),
            centre_vox=tuple(data["centre_vox"]),  # type: ignore[arg-type]
            contrast_hu={k: float(v) for k, v in data["contrast_hu"].items()},
            std_hu={k: float(v) for k, v in data["std_hu"].items()},
            semi_axes_mm=tuple(float(a) for a in data["semi_axes_mm"]) if data.get("semi_axes_mm") else None,  # type: ignore[arg-type]
            noise_ratio={k: float(v) for k, v in data["noise_ratio"].items()} if data.get("noise_ratio") is not None else None,
            edge_fraction={k: float(v) for k, v in data["edge_fraction"].items()} if data.get("edge_fraction") else None,
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
        pad = max(RING_VOX[1], NOISE_RING_VOX[1]) + 1
        grown = tuple(slice(max(s.start - pad, 0), min(s.stop + pad, n)) for s, n in zip(box, tumor.shape))
        component = components[grown] == index
        if component.sum() < MIN_VOXELS:
            continue
        measured = ring_contrast({name: volume.array[grown] for name, volume in case.phases.items()},
                                 component, liver_only[grown])
        if measured is None:
            continue
        contrast, std = measured
        centre = np.argwhere(component).mean(axis=0) + [s.start for s in grown]
        results.append(TumorContrast(
            case_id=case.case_id, voxels=int(component.sum()), volume_ml=float(component.sum() * voxel_ml),
            centre_vox=tuple(float(c) for c in centre), contrast_hu=contrast, std_hu=std,  # type: ignore[arg-type]
            semi_axes_mm=ellipsoid_semi_axes_mm(component, case.annotated.spacing_mm),
            noise_ratio=noise_ratio({name: volume.array[grown] for name, volume in case.phases.items()},
                                    component, liver_only[grown]),
            edge_fraction=edge_fraction({name: volume.array[grown] for name, volume in case.phases.items()},
                                        component, liver_only[grown]),
        ))
    return results


def noise_ratio(phases: dict[str, np.ndarray], tumor: np.ndarray, liver: np.ndarray) -> dict[str, float]:
    """Phase → one tumor's voxel noise over that of the liver ``NOISE_RING_VOX`` around it (both
    :func:`noise_sigma_hu`); empty for a tumor under ``NOISE_MIN_VOXELS``."""
    if tumor.sum() < NOISE_MIN_VOXELS:
        return {}
    structure = np.ones((3, 3, 3), bool)
    ring = (ndimage.binary_dilation(tumor, structure, iterations=NOISE_RING_VOX[1])
            & ~ndimage.binary_dilation(tumor, structure, iterations=NOISE_RING_VOX[0]) & liver)
    ratios = {}
    for name, array in phases.items():
        inside, around = noise_sigma_hu(array, tumor), noise_sigma_hu(array, ring)
        if inside > 0.0 and around > 0.0:
            ratios[name] = inside / around
    return ratios


def median_noise_ratio(tumors: list[TumorContrast]) -> dict[str, float]:
    """Phase → the median of the tumors' :attr:`TumorContrast.noise_ratio` (phases none has are left out)."""
    values: dict[str, list[float]] = {}
    for tumor in tumors:
        for name, ratio in (tumor.noise_ratio or {}).items():
            values.setdefault(name, []).append(ratio)
    return {name: float(np.median(v)) for name, v in values.items()}


EDGE_MIN_CONTRAST_HU = 8.0
"""A tumor whose contrast (root sum of squares over the phases) is below this gets no edge fraction
(the ratio of two small differences is noise)."""


def tumor_layers(tumor: np.ndarray, liver: np.ndarray) -> dict[str, np.ndarray]:
    """The regions a tumor's contrast and edge are measured on (26-connectivity steps, as
    :func:`ring_contrast`): ``core`` (the tumor eroded by one voxel; the tumor itself when that
    leaves under :data:`MIN_VOXELS`), ``edge`` (the tumor's outermost layer, empty without a core),
    ``outside`` (the liver one step outside the tumor) and ``ring`` (the liver ``RING_VOX`` around it)."""
    structure = np.ones((3, 3, 3), bool)
    core = ndimage.binary_erosion(tumor, structure)
    core = core if core.sum() >= MIN_VOXELS else tumor
    inner = ndimage.binary_dilation(tumor, structure, iterations=RING_VOX[0])
    outer = ndimage.binary_dilation(tumor, structure, iterations=RING_VOX[1])
    return {"core": core, "edge": tumor & ~core, "outside": inner & ~tumor & liver, "ring": outer & ~inner & liver}


def edge_fraction(phases: dict[str, np.ndarray], tumor: np.ndarray, liver: np.ndarray) -> dict[str, float] | None:
    """How much of one tumor's contrast shows at its boundary: ``{"edge": f, "outside": g}``.

    With ``c`` the contrast per phase (core − liver ring, as :func:`ring_contrast`) and ``e`` the
    mean of the tumor's outermost voxel layer minus the ring, ``f`` is the least-squares ratio
    ``Σ c·e / Σ c²`` over the phases (the phases with the strongest contrast weigh most); ``g``
    likewise for the liver layer just outside the tumor. A tumor drawn with a soft intensity ramp
    inside its label has ``f`` well below 1 and ``g`` near 0; a label drawn tight inside a blurred
    lesion, ``f`` near 1 and ``g`` well above 0. ``None`` for a tumor without a core, an empty
    layer, or a contrast under :data:`EDGE_MIN_CONTRAST_HU`.
    """
    layers = tumor_layers(tumor, liver)
    if tumor.sum() < MIN_VOXELS or min(int(layers[k].sum()) for k in layers) < MIN_VOXELS:
        return None
    contrast, edge, outside = [], [], []
    for array in phases.values():
        values = array.astype(np.float64)
        ring = values[layers["ring"]].mean()
        contrast.append(values[layers["core"]].mean() - ring)
        edge.append(values[layers["edge"]].mean() - ring)
        outside.append(values[layers["outside"]].mean() - ring)
    c = np.asarray(contrast)
    power = float(np.dot(c, c))
    if power < EDGE_MIN_CONTRAST_HU**2:
        return None
    return {"edge": round(float(np.dot(c, edge)) / power, 4), "outside": round(float(np.dot(c, outside)) / power, 4)}


def ring_contrast(phases: dict[str, np.ndarray], tumor: np.ndarray, liver: np.ndarray
                  ) -> tuple[dict[str, float], dict[str, float]] | None:
    """One tumor's contrast and texture per phase, on arrays that hold it (a crop or a whole case).

    Args:
        phases: phase → HU array, all of one shape.
        tumor: boolean mask of the one tumor.
        liver: boolean mask of tumor-free liver (the ring is taken inside it).

    Returns ``(contrast_hu, std_hu)`` (phase → HU), or ``None`` when the tumor or its liver ring has
    fewer than :data:`MIN_VOXELS` voxels.
    """
    if tumor.sum() < MIN_VOXELS:
        return None
    layers = tumor_layers(tumor, liver)
    core, ring = layers["core"], layers["ring"]
    if ring.sum() < MIN_VOXELS:
        return None
    contrast, std = {}, {}
    for name, array in phases.items():
        values = array.astype(np.float64)
        contrast[name] = float(values[core].mean() - values[ring].mean())
        std[name] = float(values[core].std())
    return contrast, std


def ellipsoid_semi_axes_mm(mask: np.ndarray, spacing_mm: tuple[float, float, float]) -> tuple[float, float, float]:
    """Semi-axes (mm, largest first) of the solid ellipsoid with the same second moments as ``mask``.

    A solid ellipsoid's variance along a semi-axis ``a`` is ``a²/5``; one voxel's own extent adds
    ``s²/12`` per axis, removed here, so a one-voxel tumor gets about half a voxel.
    """
    points = np.argwhere(mask) * np.asarray(spacing_mm, dtype=np.float64)
    covariance = np.cov(points.T) if len(points) > 1 else np.zeros((3, 3))
    covariance = covariance + np.diag(np.asarray(spacing_mm, dtype=np.float64) ** 2 / 12.0)
    variances = np.sort(np.clip(np.linalg.eigvalsh(covariance), 0.0, None))[::-1]
    return tuple(float(np.sqrt(5.0 * v)) for v in variances)  # type: ignore[return-value]


def summarize_contrasts(tumors: list[TumorContrast], phases: tuple[str, ...] = PHASES) -> dict[str, dict[str, float]]:
    """Per phase: ``mean``, ``std`` of the tumors' contrast (HU) and ``count``."""
    summary = {}
    for phase in phases:
        values = np.array([t.contrast_hu[phase] for t in tumors if phase in t.contrast_hu])
        if len(values):
            summary[phase] = {"mean": float(values.mean()), "std": float(values.std()), "count": int(len(values))}
    return summary


def summarize_edges(tumors: list[TumorContrast]) -> dict[str, float] | None:
    """The median ``edge`` and ``outside`` of the tumors' :attr:`TumorContrast.edge_fraction` and how
    many tumors have one (``None`` when none has)."""
    edges = [t.edge_fraction for t in tumors if t.edge_fraction]
    if not edges:
        return None
    return {"edge": float(np.median([e["edge"] for e in edges])), "outside": float(np.median([e["outside"] for e in edges])),
            "count": len(edges)}
