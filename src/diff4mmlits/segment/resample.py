"""Grid changes of the segmenter: to the plan's spacing before the network, back to the case's grid after.

The segmenter works at one voxel spacing (the plan's target spacing, nnU-Net style); this module
is the one explicit, logged step that moves data between that grid and a case's own grid
(SimpleITK resampling: linear for images and class probabilities, nearest for labels). Origin and
direction are kept; the extent is kept to within half a voxel.
"""

from __future__ import annotations

import logging

import numpy as np
import SimpleITK as sitk

from diff4mmlits.data.io import from_sitk, to_sitk
from diff4mmlits.data.volume import Volume

log = logging.getLogger(__name__)

SPACING_TOLERANCE_MM = 1e-3


def same_spacing(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return bool(np.allclose(a, b, atol=SPACING_TOLERANCE_MM))


def target_grid(volume: Volume, spacing_mm: tuple[float, float, float]) -> Volume:
    """An empty grid with ``spacing_mm`` covering ``volume`` (same origin and direction)."""
    shape = tuple(max(1, int(round(n * s / t))) for n, s, t in zip(volume.shape, volume.spacing_mm, spacing_mm))
    return Volume(np.zeros(shape, dtype=np.uint8), spacing_mm, volume.origin_mm, volume.direction, "label")


def resample_onto(volume: Volume, reference: Volume, default: float = 0.0) -> Volume:
    """``volume`` resampled onto ``reference``'s grid (linear for images, nearest for labels)."""
    if volume.same_grid(reference):
        return volume
    interpolator = sitk.sitkNearestNeighbor if volume.kind == "label" else sitk.sitkLinear
    image = to_sitk(volume)
    if volume.kind == "image" and image.GetPixelID() not in (sitk.sitkFloat32, sitk.sitkFloat64):
        image = sitk.Cast(image, sitk.sitkFloat32)
    out = sitk.Resample(image, to_sitk(reference), sitk.Transform(), interpolator, float(default), image.GetPixelID())
    result = from_sitk(out, kind=volume.kind)
    return result.with_array(result.array.astype(volume.array.dtype, copy=False)) if volume.kind == "label" else result


def resample_to_spacing(volume: Volume, spacing_mm: tuple[float, float, float]) -> Volume:
    """``volume`` at ``spacing_mm`` (mm, (z, y, x)); returned unchanged when the spacing already matches."""
    if same_spacing(volume.spacing_mm, spacing_mm):
        return volume
    return resample_onto(volume, target_grid(volume, spacing_mm), default=float(volume.array.min()) if volume.kind == "image" else 0.0)


def resample_channels_onto(channels: np.ndarray, source: Volume, reference: Volume) -> np.ndarray:
    """Resample ``(C, z, y, x)`` float maps on ``source``'s grid onto ``reference``'s grid (linear).

    Used for class probabilities: resampling probabilities, then taking the argmax, gives smoother
    labels than resampling the argmax (nnU-Net does the same).
    """
    if source.same_grid(reference):
        return channels
    out = [
        resample_onto(Volume(np.ascontiguousarray(c, dtype=np.float32), source.spacing_mm, source.origin_mm, source.direction, "image"), reference).array
        for c in channels
    ]
    return np.stack(out).astype(np.float32, copy=False)
