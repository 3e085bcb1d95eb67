"""Paper step 1, the registration itself: one phase onto the annotated phase, liver-focused.

A chain of SimpleITK ``ImageRegistrationMethod`` runs — rigid (Euler), then affine, then a coarse
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

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from diff4mmlits.data.io import first_itk_line, itk_global
from diff4mmlits.errors import InputError
from diff4mmlits.register.config import RegisterConfig
from diff4mmlits.register.resample import identity_transform

log = logging.getLogger(__name__)

CHAIN: tuple[str, ...] = ("rigid", "affine", "bspline")
"""The stages in the order they run; ``RegisterConfig.method`` names the last one."""

MOVING_PAD_MM = 60.0
"""The moving phase is cropped to the region's box grown by this much (mm); motion is far smaller."""


@dataclass(frozen=True)
class StageResult:
    """What one stage of the chain did."""

    name: str
    accepted: bool
    metric_before: float
    """Mattes MI (lower is better) of the transform the stage started from, over the whole region."""
    metric_after: float | None
    """Mattes MI after the stage; ``None`` when ITK could not finish it."""
    iterations: int
    stop: str
    seconds: float
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name, "accepted": self.accepted, "metric_before": _round(self.metric_before),
            "metric_after": _round(self.metric_after), "iterations": self.iterations, "stop": self.stop,
            "seconds": round(self.seconds, 3), **({"note": self.note} if self.note else {}),
        }


@dataclass(frozen=True)
class PhaseRegistration:
    """The transform of one phase (fixed → moving points, mm) and how it was reached."""

    transform: sitk.Transform
    kept: str
    """The last accepted stage: ``none`` (identity), ``rigid``, ``affine`` or ``bspline``."""
    metric_before: float
    """Mattes MI (lower is better) of the identity over every voxel of the region."""
    metric_after: float
    """Mattes MI of ``transform`` over the same voxels."""
    stages: list[StageResult] = field(default_factory=list)

    @property
    def fallbacks(self) -> list[str]:
        """One line per stage that was dropped (diverged or failed)."""
        return [f"{s.name}: {s.note}" for s in self.stages if not s.accepted]


def stage_names(method: str) -> tuple[str, ...]:
    """The stages ``method`` runs: ``bspline`` → rigid, affine, bspline; ``none`` → none."""
    if method == "none":
        return ()
    return CHAIN[: CHAIN.index(method) + 1]


def itk_threads(count: int) -> contextlib.AbstractContextManager:
    """SimpleITK's global default thread count set to ``count`` (0: left as it is) inside the block.

    Global, because the registration method's own ``SetNumberOfThreads`` does not reach the metric
    that it builds (measured: two runs still differed).
    """
    if count <= 0:
        return contextlib.nullcontext()
    return itk_global(sitk.ProcessObject.GetGlobalDefaultNumberOfThreads,
                      sitk.ProcessObject.SetGlobalDefaultNumberOfThreads, count)


def register_phase(fixed: sitk.Image, moving: sitk.Image, roi: sitk.Image, config: RegisterConfig,
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
    fixed, roi = _crop_to_mask(_window(fixed, config), roi)
    moving = _crop_to_world_box(_window(moving, config), fixed, MOVING_PAD_MM)
    evaluate = _metric_evaluator(fixed, moving, roi, config)
    centre = _mask_centroid(roi)

    current: sitk.Transform = identity_transform()
    try:
        current_metric = start_metric = evaluate(current)
    except RuntimeError as err:  # ITK: "All samples map outside moving image buffer" and the like
        raise InputError(f"{label}: cannot be compared with the annotated phase in the region of interest "
                         f"({_short(first_itk_line(err))}); check that the scans overlap (origin, direction)") from None
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
            candidate, after, iterations, stop = None, None, 0, _short(first_itk_line(err))
        seconds = time.perf_counter() - start
        if candidate is not None and after is not None and after <= current_metric + config.divergence_tolerance:
            stages.append(StageResult(name, True, current_metric, after, iterations, _short(stop), seconds))
            current, current_metric, kept = candidate, after, name
            continue
        note = (f"failed ({stop}); kept {kept}" if after is None
                else f"diverged (metric {after:.4f} worse than {current_metric:.4f}); kept {kept}")
        log.warning("%s: %s stage %s", label, name, note)
        stages.append(StageResult(name, False, current_metric, after, iterations, _short(stop), seconds, note))
        # the next stage (if any) starts again from the last good transform
    return PhaseRegistration(_flatten(current), kept, start_metric, current_metric, stages)


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
    flat = _flatten(transform)
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


# --- the metric over the whole region --------------------------------------------------------
def _metric_evaluator(fixed: sitk.Image, moving: sitk.Image, roi: sitk.Image, config: RegisterConfig):
    """A function ``transform → Mattes MI`` over every voxel of the region, at full resolution.

    (``MetricEvaluate`` samples densely whatever the sampling settings, so the value does not
    depend on the optimizer's random sample: a fair referee for the divergence check.)
    """

    def evaluate(transform: sitk.Transform) -> float:
        method = sitk.ImageRegistrationMethod()
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=config.histogram_bins)
        method.SetMetricFixedMask(roi)
        method.SetInterpolator(sitk.sitkLinear)
        method.SetInitialTransform(transform, inPlace=False)
        return float(method.MetricEvaluate(fixed, moving))

    return evaluate


# --- image preparation -----------------------------------------------------------------------
def _window(image: sitk.Image, config: RegisterConfig) -> sitk.Image:
    """Float32 copy clipped to the soft-tissue window the metric's histogram is spread over."""
    low, high = config.intensity_window_hu
    return sitk.Clamp(sitk.Cast(image, sitk.sitkFloat32), sitk.sitkFloat32, float(low), float(high))


def _crop_to_mask(image: sitk.Image, mask: sitk.Image, pad_vox: int = 2) -> tuple[sitk.Image, sitk.Image]:
    """Crop an image and its mask (same grid) to the mask's bounding box grown by ``pad_vox``."""
    array = sitk.GetArrayViewFromImage(mask)
    nonzero = np.nonzero(array)
    if len(nonzero[0]) == 0:
        return image, mask
    lo_zyx = [max(0, int(a.min()) - pad_vox) for a in nonzero]
    hi_zyx = [min(n, int(a.max()) + pad_vox + 1) for a, n in zip(nonzero, array.shape)]
    index = [int(v) for v in reversed(lo_zyx)]
    size = [int(h - lo) for h, lo in zip(reversed(hi_zyx), reversed(lo_zyx))]
    return sitk.RegionOfInterest(image, size, index), sitk.RegionOfInterest(mask, size, index)


def _crop_to_world_box(moving: sitk.Image, fixed: sitk.Image, pad_mm: float) -> sitk.Image:
    """Crop ``moving`` to the world bounding box of ``fixed`` grown by ``pad_mm`` (never empty)."""
    size = fixed.GetSize()
    corners = [fixed.TransformIndexToPhysicalPoint((i, j, k)) for i in (0, size[0] - 1)
               for j in (0, size[1] - 1) for k in (0, size[2] - 1)]
    lo = np.min(corners, axis=0) - pad_mm
    hi = np.max(corners, axis=0) + pad_mm
    box = [moving.TransformPhysicalPointToContinuousIndex(tuple(float(v) for v in (x, y, z)))
           for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    box_lo = np.floor(np.min(box, axis=0)).astype(int)
    box_hi = np.ceil(np.max(box, axis=0)).astype(int) + 1
    moving_size = np.asarray(moving.GetSize())
    start = np.clip(box_lo, 0, moving_size - 1)
    stop = np.clip(box_hi, start + 1, moving_size)
    if np.all(start == 0) and np.all(stop == moving_size):
        return moving
    return sitk.RegionOfInterest(moving, [int(v) for v in stop - start], [int(v) for v in start])


def _mask_centroid(mask: sitk.Image) -> tuple[float, float, float]:
    """World centroid (x, y, z, mm) of a mask: the centre of rotation of the rigid and affine stages."""
    index_zyx = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0)
    if len(index_zyx) == 0:
        index_xyz = (np.asarray(mask.GetSize()) - 1) / 2.0
    else:
        index_xyz = index_zyx.mean(axis=0)[::-1]
    return tuple(float(v) for v in mask.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in index_xyz)))


def _flatten(transform: sitk.Transform) -> sitk.Transform:
    """A composite of one transform is that transform (simpler files for 3D Slicer)."""
    if transform.GetName() == "CompositeTransform":
        composite = sitk.CompositeTransform(transform)
        if composite.GetNumberOfTransforms() == 1:
            return composite.GetNthTransform(0).Downcast()
    return transform.Downcast() if hasattr(transform, "Downcast") else transform


def _itk_seed(seed: int) -> int:
    """ITK's sampling seed for ours: ITK reads 0 as "seed from the wall clock", so shift by one."""
    return int(seed) % (2**31 - 2) + 1


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 5)
