"""Paper step 1 with ConvexAdam: the SimpleITK chain to affine, then a MIND-SSC deformable step.

A thin adapter around ``convexadam`` (Siebert, Hansen & Heinrich 2021, first across the Learn2Reg
tasks; the optional extra ``convexadam``). Its MIND-SSC self-similarity features compare local
structure, not intensities, so a phase's contrast change does not mislead it. The steps:

1. the SimpleITK chain up to ``affine`` (:func:`diff4mmlits.register.method.register_phase_chain`)
   brings the phase within ConvexAdam's capture range;
2. both images are resampled onto an isotropic working grid (``convexadam_spacing_mm``) over the
   region of interest's box — the metric sees the liver and its margin only — the phase through
   the affine transform;
3. ``convex_adam_pt`` finds a dense displacement on that grid (coupled convex discrete search with
   inverse consistency, then Adam with diffusion regularisation);
4. the displacement (voxels of the working grid) becomes a world-space (mm) displacement-field
   transform; the result is ``CompositeTransform([affine, field])``: the field first, then the
   affine, fixed → moving points (ITK's convention). Outside the working grid the field is zero.

Displacement fields are written as ``.h5`` ITK transform files (3D Slicer loads them). With
``register.threads`` 1 torch runs on one thread here, so the same inputs give the same field.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time

import numpy as np
import SimpleITK as sitk

from diff4mmlits.errors import InputError
from diff4mmlits.register.config import RegisterConfig
from diff4mmlits.register.method import register_phase_chain
from diff4mmlits.register.phase import (
    PhaseRegistration,
    StageResult,
    crop_to_mask,
    resampling_evaluator,
    short,
    window_image,
)

log = logging.getLogger(__name__)

INSTALL_HINT = "register --method convexadam needs convexadam: pip install 'diff4mmlits[convexadam]' (or convexadam), then rerun"


def require_convexadam():
    """ConvexAdam's ``convex_adam_pt``, or :class:`InputError` with one line saying how to install it."""
    try:
        from convexAdam.convex_adam_MIND import convex_adam_pt
    except ImportError:
        raise InputError(INSTALL_HINT) from None
    return convex_adam_pt


def working_grid(fixed: sitk.Image, roi: sitk.Image, spacing_mm: float, multiple: int) -> sitk.Image:
    """An isotropic grid (``spacing_mm``, the fixed image's direction) over the region's box.

    Each side is a multiple of ``multiple`` voxels (ConvexAdam pools by its control-point step).
    """
    _, box = crop_to_mask(fixed, roi)
    size = np.asarray(box.GetSize(), dtype=float)
    extent = (size - 1) * np.asarray(box.GetSpacing())
    voxels = np.maximum(multiple * 2, np.ceil((extent / spacing_mm + 1) / multiple) * multiple).astype(int)
    direction = np.asarray(fixed.GetDirection()).reshape(3, 3)
    centre = np.asarray(box.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in (size - 1) / 2)))
    origin = centre - direction @ ((voxels - 1) / 2 * spacing_mm)
    grid = sitk.Image([int(v) for v in voxels], sitk.sitkFloat32)
    grid.SetSpacing([float(spacing_mm)] * 3)
    grid.SetDirection(fixed.GetDirection())
    grid.SetOrigin(tuple(float(v) for v in origin))
    return grid


def field_transform(displacement_vox: np.ndarray, grid: sitk.Image) -> sitk.DisplacementFieldTransform:
    """ConvexAdam's ``(z, y, x, 3)`` displacement (grid voxels along z, y, x) as a world-space (mm) field."""
    spacing = np.asarray(grid.GetSpacing())
    direction = np.asarray(grid.GetDirection()).reshape(3, 3)
    index_xyz = displacement_vox[..., ::-1] * spacing  # (x, y, z) index steps in mm
    world = index_xyz @ direction.T
    image = sitk.GetImageFromArray(world.astype(np.float64), isVector=True)
    image.CopyInformation(grid)
    return sitk.DisplacementFieldTransform(image)


def register_phase_convexadam(fixed: sitk.Image, moving: sitk.Image, roi: sitk.Image, config: RegisterConfig,
                              label: str = "phase") -> PhaseRegistration:
    """Register ``moving`` onto ``fixed`` inside ``roi``: affine chain, then ConvexAdam (module docstring).

    Args:
        fixed: the annotated phase on its own grid, HU.
        moving: the phase, HU, on its own grid.
        roi: uint8 mask on ``fixed``'s grid.
        config: the ``register`` section (``convexadam_*`` settings and the chain's).
        label: a name for log lines.

    Returns:
        ``CompositeTransform([affine, field])`` (fixed → moving points, mm) and the stages' records.

    Raises:
        InputError: convexadam is not installed, or the phase and region cannot be compared.
    """
    convex_adam_pt = require_convexadam()
    affine = register_phase_chain(fixed, moving, roi, config.model_copy(update={"method": "affine"}), label)
    start = time.perf_counter()
    multiple = int(np.lcm(config.convexadam_grid_sp, 2))
    grid = working_grid(fixed, roi, config.convexadam_spacing_mm, multiple)
    low = float(config.intensity_window_hu[0])
    fixed_windowed = window_image(fixed, config.intensity_window_hu)
    moving_windowed = window_image(moving, config.intensity_window_hu)
    fixed_work_source, moving_work_source = fixed_windowed, moving_windowed
    if config.convexadam_presmooth_mm > 0:
        fixed_work_source = sitk.SmoothingRecursiveGaussian(fixed_windowed, config.convexadam_presmooth_mm)
        moving_work_source = sitk.SmoothingRecursiveGaussian(moving_windowed, config.convexadam_presmooth_mm)
    fixed_work = sitk.Resample(fixed_work_source, grid, sitk.Transform(), sitk.sitkLinear, low)
    moving_work = sitk.Resample(moving_work_source, grid, affine.transform, sitk.sitkLinear, low)
    fixed_crop, roi_crop = crop_to_mask(fixed_windowed, roi)
    evaluate = resampling_evaluator(fixed_crop, moving_windowed, roi_crop,
                                    config.histogram_bins)
    current = evaluate(affine.transform)  # the same referee for the affine result and the field
    try:
        displacement = _run(convex_adam_pt, fixed_work, moving_work, config)
        transform = sitk.CompositeTransform([affine.transform, field_transform(displacement, grid)])
        after = evaluate(transform)
        stop = "ConvexAdam finished"
    except (RuntimeError, ValueError) as err:
        transform, after, stop = None, None, short(str(err))
    seconds = time.perf_counter() - start
    if transform is not None and after is not None and after <= current + config.divergence_tolerance:
        stage = StageResult("convexadam", True, current, after, config.convexadam_iterations, stop, seconds)
        return PhaseRegistration(transform, "convexadam", affine.metric_before, after, [*affine.stages, stage])
    note = (f"failed ({stop}); kept {affine.kept}" if after is None
            else f"diverged (metric {after:.4f} worse than {current:.4f}); kept {affine.kept}")
    log.warning("%s: convexadam stage %s", label, note)
    stage = StageResult("convexadam", False, current, after, config.convexadam_iterations, stop, seconds, note)
    return PhaseRegistration(affine.transform, affine.kept, affine.metric_before, current, [*affine.stages, stage])


def _run(convex_adam_pt, fixed: sitk.Image, moving: sitk.Image, config: RegisterConfig) -> np.ndarray:
    """``convex_adam_pt`` on two images of one grid: ``(z, y, x, 3)`` displacement in grid voxels."""
    import torch

    if math.prod(fixed.GetSize()) == 0:
        raise ValueError("empty working grid")
    threads = _torch_threads(config.threads) if config.threads > 0 else contextlib.nullcontext()
    with threads, contextlib.redirect_stdout(None):
        displacement = convex_adam_pt(
            torch.from_numpy(sitk.GetArrayFromImage(fixed)), torch.from_numpy(sitk.GetArrayFromImage(moving)),
            grid_sp=config.convexadam_grid_sp, disp_hw=config.convexadam_disp_hw,
            lambda_weight=config.convexadam_lambda, selected_niter=config.convexadam_iterations,
            selected_smooth=config.convexadam_smooth_vox, ic=True,
            dtype=torch.float32, device=torch.device("cpu"),
        )
    return np.asarray(displacement, dtype=np.float64)


@contextlib.contextmanager
def _torch_threads(count: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
