"""Random tumor masks (paper §III-B, "Multimodal CT Synthesizer", inference stage).

"A coordinate within the liver region is randomly selected as the center point, and random values
for the semi-axes x, y and z are assigned. An ellipsoidal mask approximating the tumor is then
generated based on these parameters, followed by elastic deformation."

Randomness and drawing are two steps: :func:`sample_tumor_params` draws every random choice from
the ``np.random.Generator`` it is given and returns plain :class:`TumorParams`;
:func:`draw_tumor_mask` turns parameters into a mask deterministically (the elastic field comes
from a seed stored in the parameters), so the parameters recorded in ``provenance.json`` redraw
the same mask.

Where the real tumors of the training split are known (measured by
:func:`~diff4mmlits.synthesize.contrast.measure_tumor_contrasts`), the draw follows the dataset
(issue 14, ``tumor.source = "dataset"``): the number of tumors is that of a random real case with
tumors, each tumor takes the semi-axes (so the size and the elongation) of a random real tumor with
a log-normal jitter, and the same real tumor gives its per-phase enhancement profile (so one
synthetic tumor has one coherent kind over all phases). Centres avoid the liver's large vessels.
``tumor.source = "classes"`` keeps the fixed size classes.

Geometry: centres are voxel indices ``(z, y, x)`` of the case's grid, sizes are mm; the
ellipsoid is drawn in index space scaled by the voxel spacing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from diff4mmlits import PHASES
from diff4mmlits.data.volume import Volume
from diff4mmlits.errors import InputError
from diff4mmlits.synthesize.config import TumorMaskConfig
from diff4mmlits.synthesize.contrast import TumorContrast, summarize_contrasts

ELASTIC_LATTICE_MAX = 33
"""Largest number of lattice points per axis of the elastic field (keeps big tumors cheap)."""


@dataclass(frozen=True)
class TumorParams:
    """Everything that decides one tumor mask (JSON-able, recorded in provenance).

    Attributes:
        size_class: ``tiny``, ``small``, ``medium`` or ``large`` (any key of the config's classes).
        centre_vox: ellipsoid centre as voxel indices ``(z, y, x)`` on the case's grid.
        semi_axes_mm: the three semi-axes, mm, along the ellipsoid's own axes.
        rotation_quat: unit quaternion ``(x, y, z, w)`` (scipy order) turning the ellipsoid's axes
            into the grid's ``(z, y, x)`` axes.
        elastic_amplitude_mm: standard deviation of the elastic displacement, mm.
        elastic_sigma_mm: Gaussian smoothing of the elastic field, mm.
        elastic_seed: seed of the elastic field's white noise.
        reference: index of the real tumor whose shape (and, without ``profile_reference``, whose
            profile and edge) were drawn (-1: none).
        profile_reference: with ``profile_from = any``, the real tumor whose profile and edge were
            drawn apart from the shape (-1: the profile is ``reference``'s).
        profile_hu: phase → the tumor-to-liver contrast this tumor is painted with, HU (``None``:
            the painter decides).
        edge_fraction: the edge of the real tumor the profile came from (``{"edge", "outside"}``, see
            :func:`~diff4mmlits.synthesize.contrast.edge_fraction`; ``None``: not known).
    """

    size_class: str
    centre_vox: tuple[float, float, float]
    semi_axes_mm: tuple[float, float, float]
    rotation_quat: tuple[float, float, float, float]
    elastic_amplitude_mm: float
    elastic_sigma_mm: float
    elastic_seed: int
    reference: int = -1
    profile_hu: dict[str, float] | None = None
    edge_fraction: dict[str, float] | None = None
    profile_reference: int = -1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TumorParams:
        return cls(
            size_class=str(data["size_class"]),
            centre_vox=tuple(float(v) for v in data["centre_vox"]),  # type: ignore[arg-type]
            semi_axes_mm=tuple(float(v) for v in data["semi_axes_mm"]),  # type: ignore[arg-type]
            rotation_quat=tuple(float(v) for v in data["rotation_quat"]),  # type: ignore[arg-type]
            elastic_amplitude_mm=float(data["elastic_amplitude_mm"]),
            elastic_sigma_mm=float(data["elastic_sigma_mm"]),
            elastic_seed=int(data["elastic_seed"]),
            reference=int(data.get("reference", -1)),
            profile_hu={k: float(v) for k, v in data["profile_hu"].items()} if data.get("profile_hu") else None,
            edge_fraction={k: float(v) for k, v in data["edge_fraction"].items()} if data.get("edge_fraction") else None,
            profile_reference=int(data.get("profile_reference", -1)),
        )

    @property
    def extent_mm(self) -> float:
        """Radius of a sphere that holds the deformed tumor (largest semi-axis + 3σ of the field)."""
        return max(self.semi_axes_mm) + 3.0 * self.elastic_amplitude_mm


def tumor_centre_candidates(liver_mask: np.ndarray, spacing_mm: tuple[float, float, float], erode_mm: float,
                            vessels: np.ndarray | None = None, vessel_margin_mm: float = 0.0) -> np.ndarray:
    """Voxel indices ``(N, 3)`` where a tumor centre may go: the liver eroded by ``erode_mm``, farther
    than ``vessel_margin_mm`` from ``vessels`` (boolean, e.g. :func:`large_vessel_mask`; only their
    part inside the liver counts).

    A liver thinner than ``2·erode_mm`` is eroded as far as it allows (its deepest voxels); when the
    vessels leave no candidate, they are ignored.
    """
    return centre_candidates_and_depth(liver_mask, spacing_mm, erode_mm, vessels, vessel_margin_mm)[0]


def centre_candidates_and_depth(liver_mask: np.ndarray, spacing_mm: tuple[float, float, float], erode_mm: float,
                                vessels: np.ndarray | None = None, vessel_margin_mm: float = 0.0,
                                ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`tumor_centre_candidates` and each candidate's distance to the liver surface, mm ``(N,)``."""
    liver = np.asarray(liver_mask, dtype=bool)
    if not liver.any():
        raise InputError("the liver mask is empty; a tumor needs a liver to go into (check label.nii.gz)")
    # the distance transforms run on the liver's box and one voxel around it (the same distances:
    # the nearest background voxel of a liver voxel is in that box, and so is every vessel voxel that
    # counts, the vessels being in the liver): 1.5 -> 0.36 s on a 192 x 192 x 144 case
    (box,) = ndimage.find_objects(liver.astype(np.uint8))
    box = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(box, liver.shape))
    liver = liver[box]
    depth = ndimage.distance_transform_edt(liver, sampling=spacing_mm)
    threshold = min(float(erode_mm), float(depth.max()))
    inside = depth >= threshold
    if vessels is not None and vessel_margin_mm > 0:
        vessels_in_liver = np.asarray(vessels, bool)[box] & liver
        if vessels_in_liver.any():
            away = ndimage.distance_transform_edt(~vessels_in_liver, sampling=spacing_mm) > vessel_margin_mm
            if np.any(inside & away):
                inside &= away
    candidates = np.argwhere(inside)
    return candidates + np.array([s.start for s in box]), depth[tuple(candidates.T)]


VESSEL_MIN_ML = 0.05
"""Bright liver components smaller than this (mL) are noise or small branches, not large vessels."""


def large_vessel_mask(phases: dict[str, np.ndarray], liver_mask: np.ndarray, spacing_mm: tuple[float, float, float],
                      excess_hu: float = 30.0) -> np.ndarray:
    """The liver's large vessels: contrast-filled lumen brighter than the parenchyma (boolean ``(z, y, x)``).

    In the portal venous phase (else the brightest-vessel phase present) a liver voxel is vessel
    when it exceeds the liver median by ``excess_hu`` and by three robust standard deviations
    (1.4826·MAD); an opening removes single noisy voxels and components under
    :data:`VESSEL_MIN_ML` are dropped. Used to keep synthetic tumor centres off the vessels.
    """
    liver = np.asarray(liver_mask, dtype=bool)
    name = "PVP" if "PVP" in phases else next((p for p in ("DP", "AP", "NC") if p in phases), None)
    if name is None or liver.sum() < 27:
        return np.zeros(liver.shape, bool)
    (box,) = ndimage.find_objects(liver.astype(np.uint8))  # the work is on the liver's box; the same result
    image, in_liver = phases[name][box], liver[box]
    values = image[in_liver]
    median = float(np.median(values))
    sigma = 1.4826 * float(np.median(np.abs(values - median)))
    bright = in_liver & (image > median + max(excess_hu, 3.0 * sigma))
    bright = ndimage.binary_opening(bright, np.ones((2, 2, 2), bool))
    vessels = np.zeros(liver.shape, bool)
    components, count = ndimage.label(bright)
    if count:
        sizes = ndimage.sum_labels(bright, components, index=np.arange(1, count + 1)) * float(np.prod(spacing_mm)) / 1000.0
        vessels[box] = np.isin(components, 1 + np.flatnonzero(sizes >= VESSEL_MIN_ML))
    return vessels


def sample_tumor_params(
    rng: np.random.Generator,
    liver_mask: np.ndarray,
    spacing_mm: tuple[float, float, float],
    config: TumorMaskConfig,
    max_semi_axis_mm: float | None = None,
    real_tumors: list[TumorContrast] | None = None,
    vessels: np.ndarray | None = None,
) -> list[TumorParams]:
    """Draw the tumors of one synthetic case: their number, sizes, shapes, centres and profiles.

    Args:
        rng: the only source of randomness.
        liver_mask: boolean ``(z, y, x)`` liver of the case (tumors go inside it).
        spacing_mm: voxel size ``(z, y, x)``, mm.
        config: the source of sizes (``dataset`` or ``classes``), size classes, tumors per case,
            jitters, elastic field, placement.
        max_semi_axis_mm: optional cap on every semi-axis (e.g. so that a tumor fits the crop the
            diffusion model paints); a dataset shape is scaled down as a whole, keeping its elongation.
        real_tumors: the measured real tumors of the training split. Each synthetic tumor then takes
            a random real tumor's enhancement profile (jittered by ``profile_jitter`` of each phase's
            spread) and edge fraction and, with ``source = "dataset"``, its shape and its case's
            tumor count (small shapes drawn more often with ``size_emphasis``; the profile from
            another real tumor with ``profile_from = "any"``).
        vessels: boolean large-vessel mask; centres stay ``vessel_margin_mm`` away from it.

    A centre lies at least ``erode_liver_mm`` and ``depth_factor`` times the tumor's mean semi-axis
    inside the liver surface (as deep as the liver allows).
    """
    real = [t for t in real_tumors or [] if t.contrast_hu]
    shaped = [i for i, t in enumerate(real) if t.semi_axes_mm]
    from_dataset = config.source == "dataset" and bool(shaped)
    names = sorted(config.size_classes_mm)
    unknown = sorted(set(config.size_class_weights) - set(names))
    if unknown:
        raise InputError(f"synthesize.tumor.size_class_weights: {unknown} are not size classes ({', '.join(names)})")
    weights = np.array([max(float(config.size_class_weights.get(name, 0.0)), 0.0) for name in names])
    if weights.sum() <= 0 and not from_dataset:
        raise InputError("synthesize.tumor.size_class_weights: at least one weight must be positive")
    lo, hi = config.tumors_per_case
    if not 1 <= lo <= hi:
        raise InputError(f"synthesize.tumor.tumors_per_case {config.tumors_per_case}: need 1 ≤ smallest ≤ largest")
    candidates, depth = centre_candidates_and_depth(liver_mask, spacing_mm, config.erode_liver_mm, vessels,
                                                    config.vessel_margin_mm)
    if from_dataset:
        counts = np.unique([real[i].case_id for i in shaped], return_counts=True)[1]
        count = int(min(max(int(counts[int(rng.integers(len(counts)))]), 1), config.max_tumors_per_case))
    else:
        count = int(rng.integers(lo, hi + 1))
    spread = summarize_contrasts(real) if real else {}
    if from_dataset and config.size_emphasis > 0:  # small tumors drawn more often (TumorMaskConfig.size_emphasis)
        weight = np.array([max(real[i].voxels, 1) for i in shaped], float) ** -config.size_emphasis
        shape_share = weight / weight.sum()
    tumors = []
    for _ in range(count):
        reference, profile, edge, profile_reference = -1, None, None, -1
        if from_dataset:
            if config.size_emphasis > 0:
                reference = shaped[int(rng.choice(len(shaped), p=shape_share))]
            else:
                reference = shaped[int(rng.integers(len(shaped)))]
            size_class = "dataset"
            axes = np.asarray(real[reference].semi_axes_mm) * np.exp(config.size_jitter * rng.standard_normal(3))
            axes = np.maximum(axes, 0.5 * min(spacing_mm))
            if max_semi_axis_mm is not None and axes.max() > max_semi_axis_mm:
                axes = axes * (max_semi_axis_mm / axes.max())
        else:
            size_class = names[int(rng.choice(len(names), p=weights / weights.sum()))]
            low_mm, high_mm = sorted(config.size_classes_mm[size_class])
            axes = rng.uniform(low_mm, high_mm, size=3)
            if max_semi_axis_mm is not None:
                axes = np.minimum(axes, max_semi_axis_mm)
            if real:
                reference = int(rng.integers(len(real)))
        if from_dataset and config.profile_from == "any":  # the kind drawn apart from the shape
            profile_reference = int(rng.integers(len(real)))
        if reference >= 0:
            source = real[profile_reference if profile_reference >= 0 else reference]
            profile = {phase: round(float(source.contrast_hu[phase] + config.profile_jitter * spread[phase]["std"]
                                          * rng.standard_normal()), 2)
                       for phase in PHASES if phase in source.contrast_hu}
            edge = source.edge_fraction
        # deep enough that the liver surface does not cut the tumor (a cut tumor is smaller and flatter
        # than the real one it was drawn from); a liver too thin for it offers its deepest voxels
        deep = candidates[depth >= min(config.depth_factor * float(np.mean(axes)), float(depth.max()))]
        centre = deep[int(rng.integers(len(deep)))]
        quat = rng.normal(size=4)
        quat /= np.linalg.norm(quat) or 1.0
        mean_axis = float(axes.mean())
        tumors.append(TumorParams(
            size_class=size_class,
            centre_vox=tuple(float(c) for c in centre),  # type: ignore[arg-type]
            semi_axes_mm=tuple(float(a) for a in axes),  # type: ignore[arg-type]
            rotation_quat=tuple(float(q) for q in quat),  # type: ignore[arg-type]
            elastic_amplitude_mm=config.elastic_amplitude * mean_axis,
            elastic_sigma_mm=max(config.elastic_smoothness * mean_axis, 1e-3),
            elastic_seed=int(rng.integers(2**31 - 1)),
            reference=reference,
            profile_hu=profile,
            edge_fraction=dict(edge) if edge else None,
            profile_reference=profile_reference,
        ))
    return tumors


def elastic_field(params: TumorParams, half_extent_mm: float) -> tuple[np.ndarray, float]:
    """The tumor's smooth random displacement field on its own lattice.

    Returns ``(field, lattice_spacing_mm)``: ``field`` is ``(3, n, n, n)`` mm, lattice point ``i``
    at offset ``-half_extent_mm + i·h`` from the centre. White noise from ``elastic_seed``,
    Gaussian-smoothed, each component scaled to the standard deviation ``elastic_amplitude_mm``.
    Independent of any image grid, so the same parameters give the same shape on every grid.
    """
    spacing = max(params.elastic_sigma_mm / 2.0, 2.0 * half_extent_mm / (ELASTIC_LATTICE_MAX - 1))
    n = int(math.ceil(2.0 * half_extent_mm / spacing)) + 1
    noise = np.random.default_rng(params.elastic_seed).standard_normal((3, n, n, n))
    field = np.stack([ndimage.gaussian_filter(component, params.elastic_sigma_mm / spacing, mode="wrap") for component in noise])
    std = field.reshape(3, -1).std(axis=1).reshape(3, 1, 1, 1)
    field = field / np.where(std > 0, std, 1.0) * params.elastic_amplitude_mm
    return field, spacing


def draw_tumor_mask(params: TumorParams, grid: Volume, liver_mask: np.ndarray | None = None) -> np.ndarray:
    """Boolean ``(z, y, x)`` mask of one tumor on ``grid`` (deterministic given ``params``).

    A voxel is inside when its offset from the centre, displaced by the elastic field and turned
    into the ellipsoid's frame, lies in the ellipsoid. The mask is intersected with ``liver_mask``
    when given. A tumor smaller than a voxel keeps its centre voxel (inside the liver), so a mask
    is never empty when its centre lies in the liver.
    """
    shape = np.array(grid.shape)
    spacing = np.array(grid.spacing_mm)
    centre = np.array(params.centre_vox)
    half_extent = params.extent_mm + 1e-6
    lo = np.maximum(np.floor(centre - half_extent / spacing).astype(int), 0)
    hi = np.minimum(np.ceil(centre + half_extent / spacing).astype(int) + 1, shape)
    mask = np.zeros(grid.shape, dtype=bool)
    if np.any(hi <= lo):
        return mask
    axes = [np.arange(lo[i], hi[i]) for i in range(3)]
    index = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).astype(np.float64)
    offset_mm = (index - centre) * spacing
    if params.elastic_amplitude_mm > 0:
        field, lattice = elastic_field(params, half_extent)
        coords = np.moveaxis((offset_mm + half_extent) / lattice, -1, 0)
        offset_mm = offset_mm + np.stack([ndimage.map_coordinates(c, coords, order=1, mode="nearest") for c in field], axis=-1)
    rotation = Rotation.from_quat(params.rotation_quat).as_matrix()
    local = offset_mm @ rotation  # (…, 3): coordinates along the ellipsoid's axes
    inside = np.sum((local / np.array(params.semi_axes_mm)) ** 2, axis=-1) <= 1.0
    mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = inside
    centre_index = tuple(int(round(c)) for c in centre)
    if all(0 <= c < s for c, s in zip(centre_index, shape)):
        mask[centre_index] = True
    if liver_mask is not None:
        mask &= np.asarray(liver_mask, dtype=bool)
    return mask


def draw_tumor_masks(params: list[TumorParams], grid: Volume, liver_mask: np.ndarray | None = None) -> np.ndarray:
    """The union of several tumors' masks (boolean ``(z, y, x)``)."""
    mask = np.zeros(grid.shape, dtype=bool)
    for tumor in params:
        mask |= draw_tumor_mask(tumor, grid, liver_mask)
    return mask
