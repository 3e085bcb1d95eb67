"""Liver tumors of the phantom: kinds, placement inside the liver, and per-phase appearance.

Four kinds, each with the enhancement pattern of DESIGN.md's table:

- ``hcc``: hypervascular — bright and mosaic in AP, washes out in PVP/DP (in half of them only
  slightly, so the lesion is subtle on PVP but clear on AP), often with an enhancing capsule.
- ``metastasis``: hypovascular core with an enhancing rim.
- ``cyst``: water-like, sharp, no enhancement.
- ``hemangioma``: peripheral nodular enhancement like the aorta in AP that fills in centripetally
  (partly in PVP, completely in DP, then like blood vessels).

A tumor is a rotated ellipsoid with a lobulated surface; it lives in the anatomy frame, so
breathing moves it with the liver. It is drawn only over liver tissue.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from diff4mmlits import PHASES
from diff4mmlits.data.phantom.anatomy import LIVER_TISSUES, TISSUE_ID
from diff4mmlits.data.phantom.enhancement import Contrast
from diff4mmlits.data.phantom.shapes import Blocks, FourierField, local_coordinates, random_fourier_field, rotation_zyx

TUMOR_KINDS: tuple[str, ...] = ("hcc", "metastasis", "cyst", "hemangioma")
KIND_WEIGHTS: tuple[float, ...] = (0.4, 0.3, 0.15, 0.15)
"""How often each kind is drawn."""

DIAMETER_MM: tuple[float, float] = (8.0, 40.0)
"""Tumor diameters (mm): a third small (up to 15 mm), the rest up to 40 mm."""

HEMANGIOMA_FILL: dict[str, float] = {"NC": 0.0, "AP": 0.35, "PVP": 0.7, "DP": 1.2}
"""Depth (fraction of the radius) the centripetal fill-in of a hemangioma has reached in each phase."""


@dataclass(frozen=True)
class Tumor:
    """One lesion: shape in the anatomy frame (mm) and its HU per phase.

    ``core_hu``/``rim_hu``: per phase. The rim is the capsule (HCC), the enhancing rim
    (metastasis) or, for a hemangioma, the HU of the enhancing (filled) part.
    """

    kind: str
    centre_mm: np.ndarray  # (3,) z, y, x
    radii_mm: np.ndarray  # (3,)
    rotation: np.ndarray  # (3, 3)
    lobulation: FourierField  # relative radius change as a function of direction
    core_hu: dict[str, float]
    rim_hu: dict[str, float]
    rim_mm: float  # 0 when the lesion has no rim/capsule
    texture: FourierField  # HU-free unit texture (mosaic of an HCC)
    texture_hu: dict[str, float]
    nodules: np.ndarray  # (K, 3) unit directions of a hemangioma's peripheral nodules
    subtle_on_pvp: bool

    @property
    def diameter_mm(self) -> float:
        """Equivalent-sphere diameter, mm."""
        return float(2 * np.prod(self.radii_mm) ** (1 / 3))

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        half = np.abs(self.rotation) @ self.radii_mm * 1.3
        return self.centre_mm - half, self.centre_mm + half

    def appearance(self, points: np.ndarray, phase: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """At world ``points`` ``(3, ...)``: (inside mask, tissue ids, HU) of the lesion in ``phase``."""
        local = local_coordinates(points, self.centre_mm, self.rotation)
        radii = self.radii_mm.astype(np.float32).reshape((3,) + (1,) * (points.ndim - 1))
        scaled = local / radii
        level = np.sqrt(np.sum(scaled * scaled, axis=0))
        direction = scaled / np.maximum(level, 1e-6)[None]
        rho = level / (1.0 + self.lobulation(direction))  # normalised radius, < 1 inside
        inside = rho < 1
        depth_mm = (1.0 - rho) * np.float32(self.radii_mm.min())  # distance from the surface, inwards
        tissue = np.full(rho.shape, TISSUE_ID[self.kind], dtype=np.uint8)
        hu = np.full(rho.shape, self.core_hu[phase], dtype=np.float32)
        if self.texture_hu[phase]:
            hu += np.float32(self.texture_hu[phase]) * self.texture(local)
        if self.kind == "hemangioma":
            nodular = np.max(np.tensordot(self.nodules.astype(np.float32), direction, axes=1), axis=0)  # cos to nearest nodule
            closeness = np.exp((nodular - 1.0) / 0.12)  # 1 at a nodule, → 0 between them
            reach = HEMANGIOMA_FILL[phase] * np.where(HEMANGIOMA_FILL[phase] >= 1, 1.0, closeness)
            filled = rho > 1.0 - reach
            hu[filled] = self.rim_hu[phase]
        elif self.rim_mm > 0:
            rim = depth_mm < self.rim_mm
            hu[rim] = self.rim_hu[phase]
            tissue[rim] = TISSUE_ID[f"{self.kind}_capsule" if self.kind == "hcc" else f"{self.kind}_rim"]
        return inside, tissue, hu

    def mean_hu(self, phase: str) -> float:
        """Mean HU over the whole lesion (noise-free, before blur), from a fixed set of points."""
        points = self.centre_mm[:, None] + self.rotation @ (self.radii_mm[:, None] * _UNIT_BALL_POINTS * 1.3)
        inside, _, hu = self.appearance(points.astype(np.float32), phase)
        return float(hu[inside].mean())

    def to_dict(self) -> dict:
        """JSON-ready description: kind, centre and radii (mm, z/y/x), rotation, mean HU per phase."""
        return {
            "kind": self.kind,
            "centre_mm": [round(float(v), 3) for v in self.centre_mm],
            "radii_mm": [round(float(v), 3) for v in self.radii_mm],
            "diameter_mm": round(self.diameter_mm, 2),
            "rotation": np.round(self.rotation, 6).tolist(),
            "mean_hu": {phase: round(self.mean_hu(phase), 2) for phase in PHASES},
            "core_hu": {phase: round(v, 2) for phase, v in self.core_hu.items()},
            "rim_hu": {phase: round(v, 2) for phase, v in self.rim_hu.items()} if self.rim_mm or self.kind == "hemangioma" else None,
            "rim_mm": round(self.rim_mm, 2),
            "subtle_on_pvp": self.subtle_on_pvp,
        }


def _unit_ball_points(count: int) -> np.ndarray:
    generator = np.random.default_rng(12345)  # fixed: the same evaluation points for every tumor
    points = generator.uniform(-1, 1, size=(3, count * 2))
    return points[:, np.linalg.norm(points, axis=0) <= 1][:, :count]


_UNIT_BALL_POINTS = _unit_ball_points(3000)


def sample_tumors(
    rng: np.random.Generator,
    liver: np.ndarray,
    index_to_world: np.ndarray,
    spacing_mm: tuple[float, float, float],
    contrast: Contrast,
    count: int,
) -> list[Tumor]:
    """Draw ``count`` non-overlapping tumors inside the liver.

    Args:
        liver: boolean ``(Z, Y, X)`` liver mask on the PVP grid.
        index_to_world: ``(4, 4)`` affine of that grid (z, y, x indices → mm).
        spacing_mm: that grid's spacing; the smallest diameter is at least 1.6 voxels.
    """
    depth_mm = ndimage.distance_transform_edt(liver, sampling=spacing_mm)
    smallest = max(DIAMETER_MM[0], 1.6 * max(spacing_mm))
    tumors: list[Tumor] = []
    for number in range(count):
        kind = str(rng.choice(TUMOR_KINDS, p=KIND_WEIGHTS))
        small = number == count - 1 or rng.random() < 0.33
        diameter = rng.uniform(smallest, max(smallest, 15.0)) if small else rng.uniform(max(smallest, 15.0), DIAMETER_MM[1])
        radius = diameter / 2
        candidates = depth_mm >= min(radius + 2.0, 0.8 * depth_mm.max())
        for other in tumors:  # keep lesions apart
            centre_index = np.linalg.solve(index_to_world[:3, :3], other.centre_mm - index_to_world[:3, 3])
            candidates &= _far_from(candidates.shape, centre_index, spacing_mm, radius + other.diameter_mm / 2 + 3.0)
        where = np.argwhere(candidates)
        if len(where) == 0:
            continue
        index = where[rng.integers(len(where))] + rng.uniform(-0.3, 0.3, size=3)  # stays nearest its voxel
        centre = index_to_world[:3, :3] @ index + index_to_world[:3, 3]
        tumors.append(_draw_tumor(rng, kind, centre, radius, contrast, spacing_mm))
    return tumors


def _far_from(shape: tuple[int, ...], centre_index: np.ndarray, spacing_mm: tuple[float, ...], distance_mm: float) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    squared = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre_index, spacing_mm))
    return squared > distance_mm**2


def _draw_tumor(rng: np.random.Generator, kind: str, centre: np.ndarray, radius: float, contrast: Contrast,
                spacing_mm: tuple[float, float, float]) -> Tumor:
    diameter_mm = 2 * radius
    elongation = rng.uniform(0.8, 1.2, size=3)
    radii = radius * elongation / np.prod(elongation) ** (1 / 3)
    rotation = rotation_zyx(*rng.uniform(-np.pi, np.pi, size=3))
    lobulated = {"hcc": 0.12, "metastasis": 0.15, "cyst": 0.03, "hemangioma": 0.1}[kind]
    lobulation = random_fourier_field(rng, modes=4, wavelength_mm=(1.5, 3.0), amplitude=rng.uniform(0.3, 1.0) * lobulated)
    texture = random_fourier_field(rng, modes=4, wavelength_mm=(max(4.0, radius / 2), max(8.0, radius)), amplitude=1.0)
    liver = {phase: contrast.tissue_hu("liver", phase) for phase in PHASES}
    blood = {"AP": contrast.tissue_hu("aorta", "AP"), "PVP": contrast.tissue_hu("portal_vein", "PVP"),
             "DP": 0.5 * (contrast.tissue_hu("aorta", "DP") + contrast.tissue_hu("inferior_vena_cava", "DP"))}
    pixel = float(min(spacing_mm[1:]))
    core: dict[str, float]
    rim: dict[str, float] = {}
    rim_mm, texture_hu, subtle = 0.0, dict.fromkeys(PHASES, 0.0), False
    nodules = np.zeros((0, 3))
    if kind == "hcc":
        subtle = bool(rng.random() < 0.5)
        washout = rng.uniform(4, 10) if subtle else rng.uniform(15, 30)
        pvp = liver["PVP"] - washout if subtle else float(np.clip(liver["PVP"] - washout, 80, 95))
        ap = max(rng.uniform(90, 120), min(liver["AP"] + 28, 125))
        core = {"NC": rng.uniform(35, 45), "AP": ap, "PVP": pvp, "DP": min(rng.uniform(70, 80), liver["DP"] - 10)}
        texture_hu = {"NC": 2.0, "AP": 12.0, "PVP": 4.0, "DP": 3.0}
        if diameter_mm >= 20 and rng.random() < 0.7:  # capsule of larger HCCs: thin, unseen in AP, enhancing late
            capsule = {"NC": core["NC"] + 5, "AP": core["AP"], "PVP": rng.uniform(120, 135), "DP": rng.uniform(110, 120)}
            rim_mm, rim = _thin_shell(rng.uniform(1.0, 2.0), radius, pixel, core, capsule)
    elif kind == "metastasis":
        core = {"NC": rng.uniform(35, 45), "AP": rng.uniform(50, 60), "PVP": rng.uniform(60, 80), "DP": rng.uniform(65, 80)}
        enhancing = {"NC": core["NC"] + 3, "AP": rng.uniform(85, 105), "PVP": rng.uniform(100, 120), "DP": rng.uniform(85, 100)}
        rim_mm, rim = _thin_shell(max(0.2 * radius, 2.0), radius, pixel, core, enhancing)
        texture_hu = {"NC": 2.0, "AP": 3.0, "PVP": 4.0, "DP": 3.0}
    elif kind == "cyst":
        value = rng.uniform(0, 15)
        core = {phase: float(np.clip(value + rng.uniform(-1.5, 1.5), 0, 15)) for phase in PHASES}
    else:  # hemangioma
        unfilled = rng.uniform(38, 44)
        core = {"NC": unfilled, "AP": unfilled + 5, "PVP": unfilled + 15, "DP": unfilled + 30}
        rim = {"NC": unfilled, "AP": blood["AP"] * rng.uniform(0.8, 0.95), "PVP": blood["PVP"] * rng.uniform(0.85, 0.95),
               "DP": blood["DP"]}
        nodules = rng.normal(size=(int(rng.integers(4, 8)), 3))
        nodules /= np.linalg.norm(nodules, axis=1, keepdims=True)
    return Tumor(kind=kind, centre_mm=np.asarray(centre, dtype=np.float64), radii_mm=radii, rotation=rotation,
                 lobulation=lobulation, core_hu={p: float(v) for p, v in core.items()},
                 rim_hu={p: float(v) for p, v in rim.items()}, rim_mm=float(rim_mm), texture=texture,
                 texture_hu=texture_hu, nodules=nodules, subtle_on_pvp=subtle)


def _thin_shell(true_mm: float, radius_mm: float, pixel_mm: float, core: dict[str, float],
                shell: dict[str, float]) -> tuple[float, dict[str, float]]:
    """A rim ``true_mm`` thick, drawn at least a pixel thick (at most 0.3 of the radius) and fainter in
    proportion, as partial volume would show it. Returns (drawn thickness mm, rim HU per phase)."""
    drawn = min(max(true_mm, pixel_mm), max(true_mm, 0.3 * radius_mm))
    fraction = true_mm / drawn
    return drawn, {phase: core[phase] + fraction * (shell[phase] - core[phase]) for phase in PHASES}


def paint_tumors(points: np.ndarray, tumors: list[Tumor], tissue: np.ndarray, hu: np.ndarray, phase: str) -> None:
    """Draw ``tumors`` into ``tissue`` (ids) and ``hu`` (noise-free HU) in place, over liver tissue only.

    ``points``: ``(3, Z, Y, X)`` anatomy-frame world points (mm) of the grid being drawn.
    """
    blocks = Blocks(points)
    liver_ids = np.array(LIVER_TISSUES, dtype=np.uint8)
    for tumor in tumors:
        block = blocks.slices(*tumor.box())
        if block is None:
            continue
        inside, tumor_tissue, tumor_hu = tumor.appearance(points[(slice(None), *block)], phase)
        draw = inside & np.isin(tissue[block], liver_ids)
        tissue[block][draw] = tumor_tissue[draw]
        hu[block][draw] = tumor_hu[draw]
