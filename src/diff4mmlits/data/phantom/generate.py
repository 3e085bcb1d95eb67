"""One phantom case: a patient, drawn four times (NC, AP, PVP, DP) with breathing in between.

The steps, all seeded from ``(seed, index, site)`` — or ``(seed, index, patients)``, to scan another
site's patients (below):

1. draw the patient (:mod:`.anatomy`), the contrast timing (:mod:`.enhancement`), the scan
   (:mod:`.acquisition`) and one breathing motion per non-PVP phase (:mod:`.breathing`);
2. draw the PVP tissue map and place 1–4 tumors inside its liver (:mod:`.tumors`);
3. for each phase, map every voxel of that phase's grid back to the anatomy frame (inverse
   breathing), draw tissues, HU and tumors there, then blur and add noise; the tumor-free twin is
   the same draw without tumors, with the same noise;
4. the truth displacement of each phase is ``d(p)`` on the PVP grid (ITK convention: the anatomy at
   PVP point ``p`` lies at ``p + d(p)`` in the phase).

``patients="default"`` with ``site="second"`` scans the default site's case ``index`` — the same
patient, tumors of the same kinds and sizes, the same breathing — with the second site's scanner
and protocol (every draw takes the same random number, mapped into the site's ranges; tumor
centres follow the liver on the site's grid). Where the site's grid is too coarse for a draw — a
small tumor widened to 1.6 of its voxels past 20 mm, no room left for a tumor — the draws after it
differ. At the benchmark's size 48 all of 30 test patients keep their tumors' count and kinds and
the large tumors their sizes; a small one is at least 1.6 of the site's thicker slices wide (13 mm
against 8). An out-of-distribution test on such cases measures the site alone: the second site's
own cases differ in their patients too (issue 14: its first 18 cases hold 8 tumors of 20 mm or
more where the default site's first 30 test cases hold 21).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from diff4mmlits import LABEL_BACKGROUND, LABEL_LIVER, LABEL_TUMOR, PHASES
from diff4mmlits.data.case import ANNOTATED_PHASE, Case
from diff4mmlits.data.phantom.acquisition import (
    PIXEL_JITTER,
    SITES,
    Acquisition,
    Grid,
    acquire,
    blur,
    sample_acquisition,
    slice_count,
    stored_geometry,
)
from diff4mmlits.data.phantom.anatomy import LIVER_TISSUES, TUMOR_TISSUES, Anatomy, render_anatomy, sample_anatomy
from diff4mmlits.data.phantom.breathing import Breathing, sample_breathing
from diff4mmlits.data.phantom.enhancement import Contrast, clean_hu, sample_contrast
from diff4mmlits.data.phantom.tumors import Tumor, paint_tumors, sample_tumors
from diff4mmlits.data.volume import MAX_SPACING_MM, MIN_SPACING_MM, Volume
from diff4mmlits.errors import InputError

MIN_SIZE = 16
MAX_SLICES = 2048
"""More slices than a whole-body CT at 1 mm has (and NIfTI-1 stores at most 32 767 along an axis)."""
DISPLACEMENT_QUANTUM_MM = 1.0 / 1024
"""Truth displacements are rounded to multiples of this (exact in binary: small, reproducible files)."""


@dataclass(frozen=True)
class PhantomTruth:
    """What real data never has, for one phantom case.

    Attributes:
        phase_labels: phase → label (0/1/2) on that phase's own grid.
        tumor_free: phase → the same image (HU, int16, same noise) with the tumors left out.
        displacement_mm: phase → ``(Z, Y, X, 3)`` float64 on the PVP grid, ``(z, y, x)`` components
            in mm; ITK's resampling convention: the anatomy at PVP point ``p`` lies at
            ``p + d(p)`` in that phase (zero for PVP).
        tumors: one dict per tumor: ``kind`` (hcc | metastasis | cyst | hemangioma),
            ``centre_mm`` and ``radii_mm`` (z, y, x, PVP frame), ``diameter_mm``, ``rotation``,
            ``mean_hu`` per phase (noise-free), ``core_hu``/``rim_hu``, ``subtle_on_pvp``.
        tissues: integer tissue map on the PVP grid (ids of ``TISSUES``).
        parameters: the case's seed, site, contrast timing, acquisition and breathing summary.
    """

    phase_labels: Mapping[str, Volume]
    tumor_free: Mapping[str, Volume]
    displacement_mm: Mapping[str, np.ndarray]
    tumors: list[dict]
    tissues: Volume
    parameters: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PhantomCase:
    """A phantom case as any dataset would give it (``case``), plus its ``truth``."""

    case: Case
    truth: PhantomTruth


@dataclass(frozen=True)
class PhantomPlan:
    """Every random choice of one case, drawn before anything is rendered."""

    case_id: str
    anatomy: Anatomy
    contrast: Contrast
    acquisition: Acquisition
    breathing: dict[str, Breathing]
    tumors: list[Tumor]
    pvp_tissues: np.ndarray  # tissue map on the PVP grid without tumors


@dataclass(frozen=True)
class PhaseDrawing:
    """One phase drawn on its grid before blur and noise."""

    points: np.ndarray  # (3, Z, Y, X) anatomy-frame world points of the phase's voxels, mm
    tissues: np.ndarray  # uint8 (Z, Y, X), tumors included
    hu: np.ndarray  # float32 HU, tumors included
    hu_tumor_free: np.ndarray
    label: np.ndarray  # uint8 0/1/2


def case_id_for(index: int) -> str:
    """``case_000``, ``case_001``…"""
    return f"case_{index:03d}"


def check_phantom_arguments(index: int, seed: int, site: str, size: int, patients: str | None = None,
                            slice_mm: float | None = None) -> None:
    """Raise :class:`InputError` for an unknown site or patients' site, a size below 16, a negative
    index or seed, a slice spacing that is not a positive number of mm, slices or pixels outside
    the 0.01–20 mm ``validate`` accepts, or more than :data:`MAX_SLICES` slices."""
    if site not in SITES:
        raise InputError(f"unknown phantom site {site!r}; choose one of {', '.join(SITES)}")
    if patients is not None and patients not in SITES:
        raise InputError(f"unknown phantom patients {patients!r}; choose one of {', '.join(SITES)}")
    if size < MIN_SIZE:
        raise InputError(f"phantom size {size} is too small; use at least {MIN_SIZE} voxels")
    if index < 0 or seed < 0:
        raise InputError(f"phantom case index ({index}) and seed ({seed}) must be ≥ 0")
    if slice_mm is not None and not (math.isfinite(slice_mm) and slice_mm > 0):
        raise InputError(f"phantom slice spacing {slice_mm} mm: give a positive number of mm (e.g. 5)")
    scanner = SITES[site]
    slices = slice_count(scanner, size, slice_mm)
    pixel = scanner.field_of_view_mm[1] / size  # the largest a case draws; another phase's is up to 8 % larger
    spacing = {"slice spacing": scanner.z_extent_mm / slices, "pixel": pixel * (1 + PIXEL_JITTER)}
    for what, value in spacing.items():  # a phantom that validate would refuse is not written
        if not MIN_SPACING_MM <= value <= MAX_SPACING_MM:
            raise InputError(f"phantom {what} of {value:.3g} mm (site {site}, size {size}"
                             f"{f', --slice-mm {slice_mm:g}' if slice_mm is not None else ''}) lies outside the "
                             f"{MIN_SPACING_MM:g}–{MAX_SPACING_MM:g} mm a CT has; choose a larger --size or a --slice-mm "
                             "in that range")
    if slices > MAX_SLICES:
        raise InputError(f"phantom of {slices} slices: at most {MAX_SLICES}; give a larger --slice-mm or a smaller --size")


def patient_stream(site: str, patients: str | None) -> int:
    """The random stream a case's draws come from: its patients' site's (``site``'s when None);
    both names checked by :func:`check_phantom_arguments`."""
    return list(SITES).index(patients or site)


def plan_phantom_case(index: int, seed: int = 0, site: str = "default", size: int = 64,
                      patients: str | None = None, slice_mm: float | None = None) -> PhantomPlan:
    """Draw every random choice of case ``index`` (deterministic in ``seed``, ``index``, ``site`` and
    ``patients``: whose streams the draws come from, ``site``'s own when None; module doc).
    ``slice_mm``: the slice spacing, mm (None: the site's; :func:`.acquisition.slice_count`)."""
    check_phantom_arguments(index, seed, site, size, patients, slice_mm)
    stream = patient_stream(site, patients)
    rng = np.random.default_rng([seed, index, stream])
    # issue 17's harder motion and grids draw from a stream of their own: the anatomy, tumors,
    # timing and noise of a case stay what they were
    motion_rng = np.random.default_rng([seed, index, stream, 2])
    anatomy = sample_anatomy(rng)
    contrast = sample_contrast(rng, SITES[site].timing)
    acquisition = sample_acquisition(rng, SITES[site], site, size, centre_mm=np.array([-8.0, 0.0, -22.0]),
                                     grid_rng=motion_rng, slice_mm=slice_mm)
    pvp = acquisition.grids[ANNOTATED_PHASE]
    pvp_tissues = render_anatomy(pvp.points().astype(np.float32), anatomy)
    liver = np.isin(pvp_tissues, LIVER_TISSUES)
    liver_centre = pvp.affine()[:3, :3] @ np.argwhere(liver).mean(axis=0) + np.asarray(pvp.origin_mm)
    spine_front = anatomy.spine_yx[0] - anatomy.vertebra_radii_yx[0]
    cavity = tuple(r - anatomy.fat_mm - anatomy.wall_mm for r in anatomy.body_radii_yx)
    breathing = {phase: sample_breathing(rng, liver_centre, spine_front, motion_rng, cavity)
                 for phase in PHASES if phase != ANNOTATED_PHASE}
    count = int(rng.choice([1, 2, 3, 4], p=[0.3, 0.3, 0.25, 0.15]))
    tumors = sample_tumors(rng, liver, pvp.affine(), pvp.spacing_mm, contrast, count)
    return PhantomPlan(case_id_for(index), anatomy, contrast, acquisition, breathing, tumors, pvp_tissues)


def draw_phase(plan: PhantomPlan, phase: str) -> PhaseDrawing:
    """Draw ``phase`` on its own grid, noise-free: inverse breathing, tissues, HU, tumors, label."""
    grid = plan.acquisition.grids[phase]
    points = grid.points()
    if phase in plan.breathing:
        points = plan.breathing[phase].to_anatomy(points)
    points = points.astype(np.float32)
    tissues = plan.pvp_tissues.copy() if phase == ANNOTATED_PHASE else render_anatomy(points, plan.anatomy)
    hu_free = clean_hu(tissues, points, plan.anatomy, plan.contrast, phase)
    hu = hu_free.copy()
    paint_tumors(points, plan.tumors, tissues, hu, phase)
    return PhaseDrawing(points, tissues, hu, hu_free, label_from_tissues(tissues))


def label_from_tissues(tissues: np.ndarray) -> np.ndarray:
    """0 background, 1 liver (parenchyma and intrahepatic vessels), 2 tumor; uint8."""
    label = np.full(tissues.shape, LABEL_BACKGROUND, dtype=np.uint8)
    label[np.isin(tissues, LIVER_TISSUES)] = LABEL_LIVER
    label[np.isin(tissues, TUMOR_TISSUES)] = LABEL_TUMOR
    return label


def make_phantom_case(index: int, seed: int = 0, site: str = "default", size: int = 64,
                      patients: str | None = None, slice_mm: float | None = None) -> PhantomCase:
    """Generate phantom case ``index``: four misaligned phases (HU, int16), the PVP label, and the truth.

    Args:
        index: case number (the case id is ``case_{index:03d}``).
        seed: dataset seed; ``(seed, index, site)`` fixes every random choice.
        site: ``"default"``, ``"second"`` (other noise, blur, thicker slices, shifted timing) or
            ``"third"`` (thick slices, wide field of view).
        size: in-plane voxels; the PVP grid is ``(0.75·size / slice factor, size, size)``.
        patients: scan this site's case ``index`` instead of ``site``'s own (the same patient at
            another site; module doc); None: ``site``'s own.
        slice_mm: slice spacing in mm whatever ``size`` (e.g. the third site's 10 mm slices at a
            clinical pixel); None: the site's, which scales with the pixel.

    Raises:
        InputError: unknown ``site`` or ``patients``, ``size`` below 16, negative ``index`` or ``seed``,
            ``slice_mm`` not positive.
    """
    plan = plan_phantom_case(index, seed=seed, site=site, size=size, patients=patients, slice_mm=slice_mm)
    noise_rng = np.random.default_rng([seed, index, patient_stream(site, patients), 1])
    pvp_grid = plan.acquisition.grids[ANNOTATED_PHASE]
    pvp_points = pvp_grid.points()
    phases, labels, tumor_free, displacement = {}, {}, {}, {}
    for phase in PHASES:
        drawing = draw_phase(plan, phase)
        grid = plan.acquisition.grids[phase]
        image, image_free = acquire([drawing.hu, drawing.hu_tumor_free], plan.acquisition, phase, noise_rng)
        phases[phase] = _volume(image, grid, "image")
        tumor_free[phase] = _volume(image_free, grid, "image")
        labels[phase] = _volume(drawing.label, grid, "label")
        if phase == ANNOTATED_PHASE:
            tissues = _volume(drawing.tissues, grid, "label")
            field_mm = np.zeros((3, *pvp_grid.shape))
        else:
            field_mm = plan.breathing[phase].displacement(pvp_points)
        displacement[phase] = np.round(np.moveaxis(field_mm, 0, -1) / DISPLACEMENT_QUANTUM_MM) * DISPLACEMENT_QUANTUM_MM
    case = Case(case_id=plan.case_id, phases=phases, label=labels[ANNOTATED_PHASE])
    truth = PhantomTruth(
        phase_labels=MappingProxyType(labels),
        tumor_free=MappingProxyType(tumor_free),
        displacement_mm=MappingProxyType(displacement),
        tumors=[tumor.to_dict() for tumor in plan.tumors],
        tissues=tissues,
        parameters=_parameters(plan, index, seed, site, size, pvp_points) | ({"patients": patients} if patients else {})
        | ({"slice_mm": slice_mm} if slice_mm is not None else {}),
    )
    return PhantomCase(case=case, truth=truth)


HEALTHY_PATIENT_OFFSET = 400
"""Healthy scan ``i`` is phantom patient ``400 + i`` (other patients than the cases ``0…399``)."""


def make_healthy_case(index: int, seed: int = 0, site: str = "default", size: int = 64,
                      slice_mm: float | None = None) -> PhantomCase:
    """Healthy scan ``index`` (``healthy_{index:03d}``): phantom patient ``HEALTHY_PATIENT_OFFSET + index``
    as its tumor-free twin — the same phases, noise and breathing without the tumors, the label liver
    only (tumor voxels become liver, 1). The normal CT a site has in plenty and needs no tumor drawn
    for: ``data.healthy_cases`` paints synthetic tumors into such scans (paper step 3)."""
    phantom = make_phantom_case(HEALTHY_PATIENT_OFFSET + index, seed=seed, site=site, size=size, slice_mm=slice_mm)
    truth = phantom.truth

    def liver_only(label: Volume) -> Volume:
        return label.with_array(np.minimum(label.array, LABEL_LIVER).astype(label.array.dtype))

    labels = {phase: liver_only(label) for phase, label in truth.phase_labels.items()}
    tissues = truth.tissues.array.copy()
    tissues[np.isin(tissues, TUMOR_TISSUES)] = LIVER_TISSUES[0]
    case = Case(case_id=f"healthy_{index:03d}", phases=dict(truth.tumor_free), label=labels[ANNOTATED_PHASE])
    healthy = PhantomTruth(
        phase_labels=MappingProxyType(labels), tumor_free=truth.tumor_free, displacement_mm=truth.displacement_mm,
        tumors=[], tissues=truth.tissues.with_array(tissues),
        parameters={**truth.parameters, "healthy_of_patient": HEALTHY_PATIENT_OFFSET + index},
    )
    return PhantomCase(case=case, truth=healthy)


def noise_free_phases(index: int, seed: int = 0, site: str = "default", size: int = 64, patients: str | None = None,
                      tumors: bool = False, slice_mm: float | None = None) -> dict[str, Volume]:
    """Case ``index``'s phases as its scanner would see them without noise (float32 HU, blurred by the
    PSF), stored exactly as ``make_phantom_case`` stores the phases (same grid, flips and direction).

    The noise is what no method can know: a fill of an inpainting hole that equals this volume (with
    ``tumors=False``, the tumor-free twin) scores about the lowest MAE a method can expect (the floor
    of ``benchmarks/bench_inpaint.py``). Arguments as ``make_phantom_case``.
    """
    plan = plan_phantom_case(index, seed=seed, site=site, size=size, patients=patients, slice_mm=slice_mm)
    volumes = {}
    for phase in PHASES:
        drawing = draw_phase(plan, phase)
        clean = blur(drawing.hu if tumors else drawing.hu_tumor_free, plan.acquisition, phase)
        volumes[phase] = _volume(clean.astype(np.float32), plan.acquisition.grids[phase], "image")
    return volumes


def _volume(array: np.ndarray, grid: Grid, kind: str) -> Volume:
    """The drawn array as stored: flipped along ``grid.flip_axes``, with the direction that says so."""
    origin, direction = stored_geometry(grid)
    if grid.flip_axes:
        array = np.ascontiguousarray(np.flip(array, axis=grid.flip_axes))
    return Volume(array=array, spacing_mm=grid.spacing_mm, origin_mm=origin, direction=direction, kind=kind)  # type: ignore[arg-type]


def _parameters(plan: PhantomPlan, index: int, seed: int, site: str, size: int, pvp_points: np.ndarray) -> dict:
    liver = np.isin(plan.pvp_tissues, LIVER_TISSUES)
    liver_centre = pvp_points[:, liver].mean(axis=1)
    motion = {}
    for phase, breathing in plan.breathing.items():
        moved = breathing.displacement(liver_centre.reshape(3, 1))[:, 0]
        motion[phase] = {"liver_centre_displacement_mm": [round(float(v), 3) for v in moved],
                         "craniocaudal_mm": round(float(breathing.craniocaudal_mm), 3)}
    return {
        "case_id": plan.case_id, "index": index, "seed": seed, "site": site, "size": size,
        "contrast_timing": {p: round(v, 4) for p, v in plan.contrast.timing.items()},
        "acquisition": plan.acquisition.to_dict(),
        "breathing": motion,
        "liver_centre_mm": [round(float(v), 3) for v in liver_centre],
    }
