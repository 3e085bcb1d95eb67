"""What registering one phase gives, and what every registration backend shares (paper step 1).

:class:`PhaseRegistration` is the one result type of every backend (the SimpleITK chain in
``method.py``, elastix in ``elastix.py``, ConvexAdam in ``convexadam.py``): a transform in ITK's
resampling convention (annotated-grid points → phase points, mm) and a record of its stages. The
image preparation (soft-tissue window, crop to the region of interest) and the referee metric
(Mattes MI over every voxel of the region, used by the QC and the fall-back rule) are shared, so
every backend is judged alike.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from diff4mmlits.data.io import from_sitk, itk_global, to_sitk
from diff4mmlits.data.volume import Volume

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
            "name": self.name, "accepted": self.accepted, "metric_before": round_metric(self.metric_before),
            "metric_after": round_metric(self.metric_after), "iterations": self.iterations, "stop": self.stop,
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


def itk_threads(count: int) -> contextlib.AbstractContextManager:
    """SimpleITK's global default thread count set to ``count`` (0: left as it is) inside the block.

    Global, because the registration method's own ``SetNumberOfThreads`` does not reach the metric
    that it builds (measured: two runs still differed).
    """
    if count <= 0:
        return contextlib.nullcontext()
    return itk_global(sitk.ProcessObject.GetGlobalDefaultNumberOfThreads,
                      sitk.ProcessObject.SetGlobalDefaultNumberOfThreads, count)


# --- the metric over the whole region --------------------------------------------------------
REFEREE_MAX_VOXELS = 250_000
"""The referee metric shrinks the fixed image (whole factors) until its region has at most this many voxels."""


def metric_evaluator(fixed: sitk.Image, moving: sitk.Image, roi: sitk.Image, histogram_bins: int):
    """A function ``transform → Mattes MI`` over every voxel of the region.

    (``MetricEvaluate`` samples densely whatever the sampling settings, so the value does not
    depend on the optimizer's random sample: a fair referee for the divergence check.) A region of
    more than ``REFEREE_MAX_VOXELS`` voxels (a body mask at clinical size) is judged on the fixed
    image shrunk by the smallest whole factor that brings it under: still every part of the
    region, at an eighth of the cost.
    """
    inside = float(np.count_nonzero(sitk.GetArrayViewFromImage(roi)))
    factor = max(1, math.ceil((inside / REFEREE_MAX_VOXELS) ** (1 / 3) - 1e-9))
    if factor > 1:
        factors = [min(factor, n) for n in fixed.GetSize()]
        fixed = sitk.BinShrink(sitk.Cast(fixed, sitk.sitkFloat32), factors)
        roi = sitk.Cast(sitk.BinShrink(sitk.Cast(roi, sitk.sitkFloat32), factors) > 0.5, sitk.sitkUInt8)

    def evaluate(transform: sitk.Transform) -> float:
        method = sitk.ImageRegistrationMethod()
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=histogram_bins)
        method.SetMetricFixedMask(roi)
        method.SetInterpolator(sitk.sitkLinear)
        method.SetInitialTransform(transform, inPlace=False)
        method.MetricUseFixedImageGradientFilterOff()  # a value needs no gradient images
        method.MetricUseMovingImageGradientFilterOff()
        return float(method.MetricEvaluate(fixed, moving))

    return evaluate


def resampling_evaluator(fixed: sitk.Image, moving: sitk.Image, roi: sitk.Image, histogram_bins: int):
    """Like :func:`metric_evaluator`, for transforms ITK's metric cannot take (a displacement field
    over another grid than the fixed image's): ``moving`` is resampled onto ``fixed``'s grid through
    the transform first (linear), then compared with the identity. Compare only values of one evaluator."""
    low = float(np.min(sitk.GetArrayViewFromImage(moving)))

    def evaluate(transform: sitk.Transform) -> float:
        resampled = sitk.Resample(moving, fixed, transform, sitk.sitkLinear, low, sitk.sitkFloat32)
        method = sitk.ImageRegistrationMethod()
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=histogram_bins)
        method.SetMetricFixedMask(roi)
        method.SetInterpolator(sitk.sitkLinear)
        method.SetInitialTransform(sitk.Transform(3, sitk.sitkIdentity), inPlace=False)
        method.MetricUseFixedImageGradientFilterOff()
        method.MetricUseMovingImageGradientFilterOff()
        return float(method.MetricEvaluate(fixed, resampled))

    return evaluate


# --- image preparation -----------------------------------------------------------------------
def window_image(image: sitk.Image, window_hu: tuple[float, float]) -> sitk.Image:
    """Float32 copy clipped to the soft-tissue window the metric's histogram is spread over."""
    low, high = window_hu
    return sitk.Clamp(sitk.Cast(image, sitk.sitkFloat32), sitk.sitkFloat32, float(low), float(high))


def crop_to_mask(image: sitk.Image, mask: sitk.Image, pad_vox: int = 2) -> tuple[sitk.Image, sitk.Image]:
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


def crop_to_world_box(moving: sitk.Image, fixed: sitk.Image, pad_mm: float) -> sitk.Image:
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


def to_working_grid(image: sitk.Image, spacing_mm: float, label: bool = False) -> sitk.Image:
    """``image`` with voxels about ``spacing_mm`` wide: each axis finer than that is shrunk by the
    whole factor nearest ``spacing_mm / spacing`` (``BinShrink``: the mean of each block, which is
    also the anti-aliasing); a ``label`` keeps the blocks that are mostly inside. Axes already that
    coarse, and ``spacing_mm`` 0, keep the image as it is.

    Registration needs the anatomy, not every pixel: a 512 × 512 CT phase has 0.5–0.9 mm pixels,
    which cost minutes per phase in the metric and the B-spline, and no accuracy (issue 17)."""
    spacing = np.asarray(image.GetSpacing(), float)
    factors = [max(1, int(round(spacing_mm / s))) if spacing_mm > 0 else 1 for s in spacing]
    factors = [min(f, n) for f, n in zip(factors, image.GetSize())]
    if all(f == 1 for f in factors):
        return image
    shrunk = sitk.BinShrink(sitk.Cast(image, sitk.sitkFloat32), factors)
    return sitk.Cast(shrunk > 0.5, image.GetPixelID()) if label else shrunk


def shrink_volume(volume: Volume, spacing_mm: float) -> Volume:
    """:func:`to_working_grid` for a :class:`Volume` (a label becomes a 0/1 mask); ``volume`` itself
    when no axis is finer than ``spacing_mm``. Checks and QC numbers of a clinical-size case run
    on it: the same answers at a tenth of the voxels."""
    image = to_sitk(volume)
    small = to_working_grid(image, spacing_mm, label=volume.kind == "label")
    return volume if small is image else from_sitk(small, kind=volume.kind)


def prepare_pair(fixed: sitk.Image, moving: sitk.Image, roi: sitk.Image, window_hu: tuple[float, float],
                 spacing_mm: float) -> tuple[sitk.Image, sitk.Image, sitk.Image]:
    """What every backend registers: both phases windowed to ``window_hu``, the fixed phase and its
    region cropped to the region's box, the moving phase to that box grown by ``MOVING_PAD_MM``, all
    on working grids of about ``spacing_mm`` (:func:`to_working_grid`). Returns (fixed, moving, roi)."""
    fixed, roi = crop_to_mask(window_image(fixed, window_hu), roi)
    moving = crop_to_world_box(window_image(moving, window_hu), fixed, MOVING_PAD_MM)
    return (to_working_grid(fixed, spacing_mm), to_working_grid(moving, spacing_mm),
            to_working_grid(roi, spacing_mm, label=True))


def mask_centroid(mask: sitk.Image) -> tuple[float, float, float]:
    """World centroid (x, y, z, mm) of a mask: the centre of rotation of the rigid and affine stages."""
    index_zyx = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0)
    if len(index_zyx) == 0:
        index_xyz = (np.asarray(mask.GetSize()) - 1) / 2.0
    else:
        index_xyz = index_zyx.mean(axis=0)[::-1]
    return tuple(float(v) for v in mask.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in index_xyz)))


def flatten(transform: sitk.Transform) -> sitk.Transform:
    """A composite of one transform is that transform (simpler files for 3D Slicer)."""
    if transform.GetName() == "CompositeTransform":
        composite = sitk.CompositeTransform(transform)
        if composite.GetNumberOfTransforms() == 1:
            return composite.GetNthTransform(0).Downcast()
    return transform.Downcast() if hasattr(transform, "Downcast") else transform


def short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def round_metric(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 5)
