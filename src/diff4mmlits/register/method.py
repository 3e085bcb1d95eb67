"""Paper step 1, the registration itself: one phase onto the annotated phase, liver-focused.

The default backend (``register.method`` none / rigid / affine / bspline; the others are in
``backends.py``). A chain of SimpleITK ``ImageRegistrationMethod`` runs — rigid (Euler), then affine, then a coarse
cubic B-spline — each with Mattes mutual information (the phases differ in contrast) restricted to
the liver region of interest, multi-resolution (shrink and smooth per level) and a fixed random
sampling seed and one thread (``register.threads``), so the same inputs give the same transform,
bit for bit. After each stage the metric is
evaluated on every voxel of the region at full resolution; a stage that ends worse than it started
(or that ITK cannot finish) is dropped, the previous stage's transform is kept (the next stage
starts from it), and the result says so.

Convention (ITK's, for resampling): fixed = the annotated phase, moving = the phase; the transform
maps fixed points to moving points.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import SimpleITK as sitk

from diff4mmlits.data.io import first_itk_line
from diff4mmlits.errors import InputError
from diff4mmlits.register.config import RegisterConfig
from diff4mmlits.register.phase import (
    PhaseRegistration,
    StageResult,
    flatten,
    itk_threads,
    mask_centroid,
    metric_evaluator,
    prepare_pair,
    short,
)
from diff4mmlits.register.resample import identity_transform

log = logging.getLogger(__name__)

CHAIN: tuple[str, ...] = ("rigid", "affine", "bspline")
"""The stages in the order they run; ``RegisterConfig.method`` names the last one."""


def stage_names(method: str) -> tuple[str, ...]:
    """The stages ``method`` runs: ``bspline`` → rigid, affine, bspline; ``none`` → none."""
    if method == "none":
        return ()
    return CHAIN[: CHAIN.index(method) + 1]


def register_phase_chain(fixed: sitk.Image, moving: sitk.Image, roi: sitk.Image, config: RegisterConfig,
                   label: str = "phase") -> PhaseRegistration:
    """Register ``moving`` (a phase, HU) onto ``fixed`` (the annotated phase, HU) inside ``roi``.

    Args:
        fixed: the annotated phase on its own grid, HU.
        moving: the phase to align, HU, on its own grid (overlapping ``fixed`` in world space).
        roi: uint8 mask on ``fixed``'s grid; the metric only samples fixed points inside it.
        config: the ``register`` section (method, levels, iterations, sampling, grid spacing).
        label: a name for log lines (``case_03/AP``).

    Returns:
        The composed transform (fixed → moving points) and a record of each stage.

    Raises:
        InputError: the phase and the region do not overlap enough for the metric to be computed.
    """
    with itk_threads(config.threads):
        return _register_phase(fixed, moving, roi, config, label)


def _register_phase(fixed: sitk.Image, moving: sitk.Image, roi: sitk.Image, config: RegisterConfig,
                    label: str) -> PhaseRegistration:
    fixed_full = fixed
    fixed, moving, roi = prepare_pair(fixed, moving, roi, config.intensity_window_hu, config.working_spacing_mm)
    evaluate = metric_evaluator(fixed, moving, roi, config.histogram_bins)
    centre = mask_centroid(roi)

    current: sitk.Transform = identity_transform()
    try:
        current_metric = start_metric = evaluate(current)
    except RuntimeError as err:  # ITK: "All samples map outside moving image buffer" and the like
        raise InputError(f"{label}: cannot be compared with the annotated phase in the region of interest "
                         f"({short(first_itk_line(err))}); check that the scans overlap (origin, direction)") from None
    kept = "none"
    stages: list[StageResult] = []
    for name in stage_names(config.method):
        start = time.perf_counter()
        method = _registration_method(roi, config, name)
        try:
            candidate = _run_stage(method, name, fixed, fixed_full, moving, current, centre, config)
            after = evaluate(candidate)
            iterations, stop = method.GetOptimizerIteration(), method.GetOptimizerStopConditionDescription()
        except RuntimeError as err:
            candidate, after, iterations, stop = None, None, 0, short(first_itk_line(err))
        seconds = time.perf_counter() - start
        if candidate is not None and after is not None and after <= current_metric + config.divergence_tolerance:
            stages.append(StageResult(name, True, current_metric, after, iterations, short(stop), seconds))
            current, current_metric, kept = candidate, after, name
            continue
        note = (f"failed ({stop}); kept {kept}" if after is None
                else f"diverged (metric {after:.4f} worse than {current_metric:.4f}); kept {kept}")
        log.warning("%s: %s stage %s", label, name, note)
        stages.append(StageResult(name, False, current_metric, after, iterations, short(stop), seconds, note))
        # the next stage (if any) starts again from the last good transform
    return PhaseRegistration(flatten(current), kept, start_metric, current_metric, stages)


# --- one stage ------------------------------------------------------------------------------
def _registration_method(roi: sitk.Image, config: RegisterConfig, name: str) -> sitk.ImageRegistrationMethod:
    """Metric, sampling, pyramid and optimizer of one stage."""
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=config.histogram_bins)
    method.SetMetricFixedMask(roi)
    if name == "bspline":
        shrink, sigmas = list(config.bspline_shrink_factors), list(config.bspline_smoothing_sigmas_mm)
    else:
        shrink, sigmas = list(config.shrink_factors), list(config.smoothing_sigmas_mm)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentagePerLevel(_sampling_per_level(roi, shrink, config), _itk_seed(config.sampling_seed))
    method.MetricUseFixedImageGradientFilterOff()  # central differences at the samples: cheaper than
    method.MetricUseMovingImageGradientFilterOff()  # a gradient image per level when sampling sparsely
    method.SetInterpolator(sitk.sitkLinear)
    method.SetShrinkFactorsPerLevel(shrink)
    method.SetSmoothingSigmasPerLevel(sigmas)
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    if name == "bspline":
        bound = config.bspline_max_displacement_mm  # control points move at most this far: no runaway
        method.SetOptimizerAsLBFGSB(
            gradientConvergenceTolerance=1e-5, numberOfIterations=config.bspline_iterations,
            maximumNumberOfCorrections=5, maximumNumberOfFunctionEvaluations=4 * config.bspline_iterations,
            costFunctionConvergenceFactor=1e7, lowerBound=-bound, upperBound=bound,
        )
    else:
        iterations = config.rigid_iterations if name == "rigid" else config.affine_iterations
        method.SetOptimizerAsRegularStepGradientDescent(
            learningRate=2.0, minStep=1e-3, numberOfIterations=iterations, relaxationFactor=0.6,
            gradientMagnitudeTolerance=1e-6,
        )
        method.SetOptimizerScalesFromPhysicalShift()
    return method


def _sampling_per_level(roi: sitk.Image, shrink: list[int], config: RegisterConfig) -> list[float]:
    """Share of voxels sampled at each level: ``sampling_percentage`` of the region, kept between
    ``sampling_min_points`` (coarse levels of small images) and ``sampling_max_points`` (large images)."""
    inside = max(float(np.count_nonzero(sitk.GetArrayViewFromImage(roi))), 1.0)
    return [_sampling_share(inside / factor**3, config.sampling_percentage, config) for factor in shrink]


def _sampling_share(inside: float, percentage: float, config: RegisterConfig) -> float:
    """``percentage`` of ``inside`` voxels, clipped to [min, max] points, as a share in (0, 1].

    ITK draws that share of the level's box at random and keeps the points inside the mask, so the
    share of the box is also the expected share of the region's voxels.
    """
    points = min(max(percentage * inside, config.sampling_min_points), config.sampling_max_points)
    return float(min(1.0, points / inside))


def _run_stage(method: sitk.ImageRegistrationMethod, name: str, fixed: sitk.Image, fixed_full: sitk.Image,
               moving: sitk.Image, current: sitk.Transform, centre: tuple[float, ...],
               config: RegisterConfig) -> sitk.Transform:
    """Run one stage from ``current``; return the composed transform (fixed → moving)."""
    if name == "rigid":
        rigid = sitk.Euler3DTransform()  # the chain starts here, from the identity (world coordinates agree)
        rigid.SetCenter(centre)
        method.SetInitialTransform(rigid, inPlace=True)
        method.Execute(fixed, moving)
        return rigid
    if name == "affine":
        affine = _as_affine(current, centre)
        method.SetInitialTransform(affine, inPlace=True)
        method.Execute(fixed, moving)
        return affine
    bspline = sitk.BSplineTransformInitializer(fixed_full, _mesh_size(fixed_full, config.bspline_grid_mm), order=3)
    method.SetMovingInitialTransform(current)
    method.SetInitialTransform(bspline, inPlace=True)
    method.Execute(fixed, moving)
    return sitk.CompositeTransform([current, bspline])  # applies the B-spline first, then `current`


def _as_affine(transform: sitk.Transform, centre: tuple[float, ...]) -> sitk.AffineTransform:
    """An affine transform equal to a rigid or affine ``transform``, centred at ``centre``."""
    flat = flatten(transform)
    matrix = np.eye(3)
    translation = np.zeros(3)
    if flat.GetName() in ("Euler3DTransform", "AffineTransform"):
        typed = sitk.Euler3DTransform(flat) if flat.GetName() == "Euler3DTransform" else sitk.AffineTransform(flat)
        matrix = np.asarray(typed.GetMatrix()).reshape(3, 3)
        old_centre = np.asarray(typed.GetCenter())
        translation = np.asarray(typed.GetTranslation())
        # T(x) = A (x − c_old) + c_old + t  =  A (x − c) + [A (c − c_old) + c_old + t]
        translation = matrix @ (np.asarray(centre) - old_centre) + old_centre + translation - np.asarray(centre)
    affine = sitk.AffineTransform(3)
    affine.SetCenter(centre)
    affine.SetMatrix(tuple(matrix.ravel()))
    affine.SetTranslation(tuple(translation))
    return affine


def _mesh_size(image: sitk.Image, grid_mm: float) -> list[int]:
    """B-spline mesh cells per axis so that control points lie about ``grid_mm`` apart."""
    extent = [(n - 1) * s for n, s in zip(image.GetSize(), image.GetSpacing())]
    return [max(1, int(math.ceil(e / grid_mm))) for e in extent]


def _itk_seed(seed: int) -> int:
    """ITK's sampling seed for ours: ITK reads 0 as "seed from the wall clock", so shift by one."""
    return int(seed) % (2**31 - 2) + 1


