"""Paper step 1 for one case: every phase registered and resampled onto the annotated phase's grid.

Pure: a :class:`~diff4mmlits.data.case.Case` in, a :class:`RegisteredCase` out (the registered
case, one transform per phase, the QC numbers). Files are the stage's business (``stage.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk

from diff4mmlits import PHASES
from diff4mmlits.data.case import Case
from diff4mmlits.data.io import to_sitk
from diff4mmlits.data.orientation import check_phase_orientation
from diff4mmlits.data.volume import Volume
from diff4mmlits.errors import InputError
from diff4mmlits.register.backends import register_phase
from diff4mmlits.register.config import RegisterConfig
from diff4mmlits.register.phase import PhaseRegistration, shrink_volume
from diff4mmlits.register.qc import label_dice, region_nmi
from diff4mmlits.register.resample import dense_transform, resample_onto
from diff4mmlits.register.roi import RegionOfInterest, liver_roi
from diff4mmlits.register.workers import run_in_processes

log = logging.getLogger(__name__)

MIN_OVERLAP_FRACTION = 0.1
"""A phase must cover at least this share of the region of interest (in world space)."""


@dataclass(frozen=True)
class RegisteredCase:
    """A case with every phase on the annotated phase's grid, and how it got there.

    Attributes:
        case: the registered case; every phase ``(z, y, x)`` float32 HU on the annotated grid (the
            annotated phase itself unchanged), the label and extras unchanged.
        transforms: phase → transform mapping annotated-grid points to that phase's points (mm),
            ITK's resampling convention; the annotated phase has none.
        qc: the QC numbers written to ``qc.json``.
        roi: the region the metric was restricted to.
    """

    case: Case
    transforms: Mapping[str, sitk.Transform]
    qc: dict[str, Any]
    roi: RegionOfInterest
    registrations: Mapping[str, PhaseRegistration] = field(default_factory=dict)


def register_case(case: Case, config: RegisterConfig, truth_labels: Mapping[str, Volume] | None = None,
                  workers: int = 1) -> RegisteredCase:
    """Register every phase of ``case`` onto its annotated phase (liver-focused) and resample it there.

    Args:
        case: phases on their own grids (HU) and a label on the annotated grid (or none: the body
            mask is used as the region, with a warning).
        config: the ``register`` section.
        truth_labels: optional per-phase labels on each phase's own grid (the phantom's truth);
            with them, ``qc`` holds liver and tumor Dice before and after.
        workers: phases registered at once, in worker processes (a single case: ``predict``); the
            result does not depend on it. The register stage runs cases in processes instead and keeps 1.

    Returns:
        The registered case, a transform per registered phase and the QC numbers.

    Raises:
        InputError: a phase's anatomy is mirrored relative to the annotated phase (a wrong header,
            :func:`~diff4mmlits.data.orientation.check_phase_orientation`); a phase does not overlap the region (a label off the annotated grid cannot
            reach here: :class:`Case` refuses it).
    """
    start = time.perf_counter()
    annotated = case.annotated
    roi = liver_roi(case, config.margin_mm)
    # checks and QC numbers on the working grid (the same as the full grid on scans that coarse)
    small = {name: shrink_volume(volume, config.working_spacing_mm) for name, volume in case.phases.items()}
    small_annotated = small[case.annotated_phase]
    small_roi = shrink_volume(roi.mask, config.working_spacing_mm)  # on the working grid of the annotated phase
    small_region = shrink_volume(case.label, config.working_spacing_mm) if roi.source == "liver" else small_roi
    world = region_points(small_roi)
    for name in case.phases:
        if name != case.annotated_phase:
            check_phase_orientation(case.case_id, name, small[name], small_annotated, case.annotated_phase)
            _require_overlap(case.case_id, name, case.phases[name], roi, world, case.annotated_phase)
    liver = small_region.array > 0

    moving_names = [name for name in PHASES if name in case.phases and name != case.annotated_phase]
    labels = {name: f"{case.case_id}/{name}" for name in moving_names}

    def resample_and_measure(name: str, registration: PhaseRegistration, seconds: float) -> tuple[Volume, dict[str, Any]]:
        measure_start = time.perf_counter()
        moving = case.phases[name]
        on_grid = dense_transform(registration.transform, annotated, config.working_spacing_mm)  # a B-spline once
        after = resample_onto(moving, annotated, on_grid, config.fill_hu)
        before_small = resample_onto(small[name], small_annotated, None, config.fill_hu)
        after_small = resample_onto(small[name], small_annotated, on_grid, config.fill_hu)
        entry: dict[str, Any] = {
            "status": "registered",
            "kept": registration.kept,
            "stages": [s.to_dict() for s in registration.stages],
            "mattes_mi_region": {"before": _round(registration.metric_before), "after": _round(registration.metric_after)},
            "nmi_region": {
                "before": _round(region_nmi(small_annotated.array, before_small.array, liver, config.intensity_window_hu)),
                "after": _round(region_nmi(small_annotated.array, after_small.array, liver, config.intensity_window_hu)),
            },
        }
        if registration.fallbacks:
            entry["fallback"] = registration.fallbacks
        if truth_labels is not None and name in truth_labels and case.label is not None:
            dice_before = label_dice(truth_labels[name], case.label, None)
            dice_after = label_dice(truth_labels[name], case.label, on_grid)
            entry["liver_dice"] = {"before": _round(dice_before["liver"]), "after": _round(dice_after["liver"])}
            entry["tumor_dice"] = {"before": _round(dice_before["tumor"]), "after": _round(dice_after["tumor"])}
        entry["seconds"] = round(seconds + time.perf_counter() - measure_start, 3)
        return after, entry

    jobs = [(small_annotated, small[name], small_roi, config, labels[name]) for name in moving_names]
    registrations: dict[str, PhaseRegistration] = {}
    measured: dict[str, tuple[Volume, dict[str, Any]]] = {}

    def finish(index: int, result: tuple[PhaseRegistration, float]) -> None:  # while other phases still register
        registrations[moving_names[index]] = result[0]
        measured[moving_names[index]] = resample_and_measure(moving_names[index], *result)

    if workers > 1 and len(jobs) > 1:  # phases in worker processes (see register/workers.py)
        run_in_processes(_registration_job, jobs, workers, on_done=finish)
    else:
        for index, job in enumerate(jobs):
            finish(index, _registration_job(job))

    phases: dict[str, Volume] = {}
    transforms: dict[str, sitk.Transform] = {}
    phase_qc: dict[str, Any] = {}
    for name in PHASES:
        if name not in case.phases:
            phase_qc[name] = {"status": "missing"}
        elif name == case.annotated_phase:
            phases[name] = annotated
            phase_qc[name] = {"status": "reference"}
        else:
            transforms[name] = registrations[name].transform
            phases[name], phase_qc[name] = measured[name]

    registered = Case(case.case_id, phases, label=case.label, annotated_phase=case.annotated_phase, extras=case.extras)
    qc = {
        "case": case.case_id,
        "method": config.method,
        "annotated_phase": case.annotated_phase,
        "region": {"source": roi.source, "margin_mm": roi.margin_mm,
                   "volume_ml": round(roi.voxels * annotated.voxel_volume_ml, 1)},
        "phases": phase_qc,
        "seconds": round(time.perf_counter() - start, 3),
    }
    return RegisteredCase(registered, transforms, qc, roi, registrations)


def _registration_job(job: tuple[Volume, Volume, Volume, RegisterConfig, str]) -> tuple[PhaseRegistration, float]:
    """One phase's registration (fixed, moving, region, settings, label) and its wall seconds."""
    fixed, moving, roi, config, label = job
    start = time.perf_counter()
    registration = register_phase(to_sitk(fixed), to_sitk(moving), to_sitk(roi), config, label=label)
    return registration, time.perf_counter() - start


def region_points(mask: Volume, count: int = 4000) -> np.ndarray:
    """About ``count`` world points (z, y, x mm) spread over a region mask, for the overlap check."""
    index = np.argwhere(mask.array > 0)
    return mask.index_to_world(index[::max(1, len(index) // count)])


def _require_overlap(case_id: str, name: str, volume: Volume, roi: RegionOfInterest, world: np.ndarray,
                     annotated_phase: str) -> None:
    """Raise :class:`InputError` when a phase's field of view misses (most of) the region of interest
    (``world``: :func:`region_points`)."""
    if len(world) == 0:
        return
    continuous = volume.world_to_index(world)
    inside = np.all((continuous >= -0.5) & (continuous <= np.asarray(volume.shape) - 0.5), axis=1)
    fraction = float(inside.mean())
    if fraction < MIN_OVERLAP_FRACTION:
        region = "liver region" if roi.source == "liver" else "body"
        raise InputError(
            f"{case_id}/{name}: covers {100 * fraction:.0f}% of the {annotated_phase} {region} in physical space "
            f"(origin {tuple(round(o, 1) for o in volume.origin_mm)} mm vs {tuple(round(o, 1) for o in roi.mask.origin_mm)} mm); "
            "the phases do not overlap — check the origin and direction in the file headers"
        )


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)
