"""Paper step 1 with elastix: rigid → affine → B-spline with a bending-energy penalty, liver-masked.

A thin adapter around ``itk-elastix`` (Klein et al. 2010; the optional extra ``elastix``): the
same inputs and result as the SimpleITK chain (:func:`diff4mmlits.register.method.register_phase`)
— the annotated phase (fixed), one phase (moving), the region of interest (a fixed mask), a
:class:`~diff4mmlits.register.phase.PhaseRegistration` out. elastix's own parameter maps (its
defaults for each stage) with Mattes MI restricted to the region, a random sampler with a fixed
seed and one thread (``register.threads`` 1: the same inputs give the same transform, bit for bit),
and on the B-spline stage a bending-energy penalty (``elastix_bending_weight``) that keeps the
field smooth. The result is converted to ITK transforms (Euler, affine, B-spline in one composite),
so the transform file is a plain ``.tfm`` that SimpleITK and 3D Slicer read. The same referee
metric as the chain judges it: a result worse than the identity falls back to the identity.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from diff4mmlits.errors import InputError
from diff4mmlits.register.config import RegisterConfig
from diff4mmlits.register.phase import (
    PhaseRegistration,
    StageResult,
    flatten,
    metric_evaluator,
    prepare_pair,
    short,
)
from diff4mmlits.register.resample import identity_transform

log = logging.getLogger(__name__)

INSTALL_HINT = "register --method elastix needs itk-elastix: pip install 'diff4mmlits[elastix]' (or itk-elastix), then rerun"
STAGES: tuple[str, ...] = ("rigid", "affine", "bspline")


def require_elastix():
    """The ``itk`` module with elastix, or :class:`InputError` with one line saying how to install it."""
    try:
        import itk

        itk.ElastixRegistrationMethod  # noqa: B018 (lazy attribute: fails here when elastix is absent)
    except (ImportError, AttributeError):
        raise InputError(INSTALL_HINT) from None
    return itk


def parameter_maps(itk, config: RegisterConfig, threads: int) -> object:
    """elastix's default rigid, affine and B-spline maps with this project's metric, mask and seed."""
    maps = itk.ParameterObject.New()
    for name in STAGES:
        m = maps.GetDefaultParameterMap(name, config.elastix_resolutions)
        m["Metric"] = ["AdvancedMattesMutualInformation"]
        m["NumberOfHistogramBins"] = [str(config.histogram_bins)]
        m["ImageSampler"] = ["RandomCoordinate"]
        m["NumberOfSpatialSamples"] = [str(config.elastix_samples)]
        m["NewSamplesEveryIteration"] = ["true"]
        m["RandomSeed"] = [str(config.sampling_seed + 1)]
        m["MaximumNumberOfIterations"] = [str(config.elastix_iterations)]
        m["ErodeMask"] = ["false"]
        if threads > 0:
            m["MaximumNumberOfThreads"] = [str(threads)]
        m["AutomaticTransformInitialization"] = ["false"]
        m["WriteResultImage"] = ["false"]
        m["DefaultPixelValue"] = [str(config.intensity_window_hu[0])]
        if name == "bspline":
            m["Registration"] = ["MultiMetricMultiResolutionRegistration"]
            m["Metric"] = ["AdvancedMattesMutualInformation", "TransformBendingEnergyPenalty"]
            m["Metric0Weight"] = ["1.0"]
            m["Metric1Weight"] = [str(config.elastix_bending_weight)]
            m["FinalGridSpacingInPhysicalUnits"] = [str(config.elastix_grid_mm)]
        maps.AddParameterMap(m)
    return maps


def register_phase_elastix(fixed: sitk.Image, moving: sitk.Image, roi: sitk.Image, config: RegisterConfig,
                           label: str = "phase") -> PhaseRegistration:
    """Register ``moving`` onto ``fixed`` inside ``roi`` with elastix (see the module docstring).

    Args:
        fixed: the annotated phase on its own grid, HU.
        moving: the phase, HU, on its own grid.
        roi: uint8 mask on ``fixed``'s grid (the metric samples fixed points inside it).
        config: the ``register`` section (``elastix_*`` settings, window, bins, seed, threads).
        label: a name for log lines.

    Returns:
        One composite transform (fixed → moving points, mm) of ITK types, and one stage record.

    Raises:
        InputError: itk-elastix is not installed, or the phase and region cannot be compared.
    """
    itk = require_elastix()
    fixed_crop, moving_crop, roi_crop = prepare_pair(fixed, moving, roi, config.intensity_window_hu,
                                                     config.working_spacing_mm)
    evaluate = metric_evaluator(fixed_crop, moving_crop, roi_crop, config.histogram_bins)
    try:
        before = evaluate(identity_transform())
    except RuntimeError as err:
        raise InputError(f"{label}: cannot be compared with the annotated phase in the region of interest "
                         f"({short(str(err))}); check that the scans overlap (origin, direction)") from None
    start = time.perf_counter()
    threads = config.threads
    try:
        registration = itk.ElastixRegistrationMethod.New(_to_itk(itk, fixed_crop, np.float32),
                                                         _to_itk(itk, moving_crop, np.float32))
        registration.SetParameterObject(parameter_maps(itk, config, threads))
        registration.SetFixedMask(_to_itk(itk, roi_crop, np.uint8))
        registration.SetLogToConsole(False)
        if threads > 0:
            registration.SetNumberOfThreads(threads)
        registration.UpdateLargestPossibleRegion()
        transform = _as_simpleitk(itk, registration)
        after = evaluate(transform)
        stop = "elastix finished"
    except (RuntimeError, ValueError) as err:  # elastix reports a failed run as an exception
        transform, after, stop = None, None, short(str(err).strip().splitlines()[-1] if str(err).strip() else "failed")
    seconds = time.perf_counter() - start
    iterations = config.elastix_iterations * config.elastix_resolutions * len(STAGES)
    if transform is not None and after is not None and after <= before + config.divergence_tolerance:
        stage = StageResult("elastix", True, before, after, iterations, stop, seconds)
        return PhaseRegistration(flatten(transform), "elastix", before, after, [stage])
    note = (f"failed ({stop}); kept none" if after is None
            else f"diverged (metric {after:.4f} worse than {before:.4f}); kept none")
    log.warning("%s: elastix %s", label, note)
    stage = StageResult("elastix", False, before, after, iterations, stop, seconds, note)
    return PhaseRegistration(identity_transform(), "none", before, before, [stage])


def _to_itk(itk, image: sitk.Image, dtype: type) -> object:
    """A SimpleITK image as an ``itk`` image of ``dtype`` with the same geometry."""
    out = itk.GetImageFromArray(np.ascontiguousarray(sitk.GetArrayViewFromImage(image), dtype=dtype))
    out.SetSpacing(image.GetSpacing())
    out.SetOrigin(image.GetOrigin())
    out.SetDirection(itk.matrix_from_array(np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)))
    return out


def _as_simpleitk(itk, registration) -> sitk.Transform:
    """elastix's combined transform as SimpleITK transforms (through an ITK transform file)."""
    converted = registration.ConvertToItkTransform(registration.GetCombinationTransform())
    with tempfile.TemporaryDirectory(prefix="diff4mmlits_elastix_") as tmp:
        path = Path(tmp) / "transform.tfm"
        itk.transformwrite([converted], str(path))
        return sitk.ReadTransform(str(path))
