"""The liver focus: the region of interest the registration metric is restricted to.

Paper step 1 aligns "the target organ" only. The region is the annotated liver (label > 0) dilated
by a margin in mm; a case without a liver in its label (or without a label) falls back to the
body mask, with a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from diff4mmlits.data.case import Case
from diff4mmlits.data.volume import Volume

log = logging.getLogger(__name__)

BODY_THRESHOLD_HU = -500.0
"""Voxels above this are tissue (air and lungs lie well below)."""


@dataclass(frozen=True)
class RegionOfInterest:
    """A boolean ``(z, y, x)`` mask on the annotated grid and where it came from."""

    mask: Volume
    source: Literal["liver", "body"]
    margin_mm: float

    @property
    def voxels(self) -> int:
        return int(np.count_nonzero(self.mask.array))


def dilate_mm(mask: np.ndarray, spacing_mm: tuple[float, float, float], margin_mm: float) -> np.ndarray:
    """Dilate a boolean ``(z, y, x)`` mask by a physical margin (mm; anisotropic spacing allowed).

    Uses the Euclidean distance transform in mm, so the margin is a true ball, not a voxel cube.
    """
    mask = np.asarray(mask, dtype=bool)
    if margin_mm <= 0 or not mask.any():
        return mask.copy()
    pad = [int(np.ceil(margin_mm / s)) + 1 for s in spacing_mm]
    zyx = np.nonzero(mask)
    lo = [max(0, int(a.min()) - p) for a, p in zip(zyx, pad)]
    hi = [min(n, int(a.max()) + p + 1) for a, n, p in zip(zyx, mask.shape, pad)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    image = sitk.GetImageFromArray(mask[box].astype(np.uint8))
    image.SetSpacing(tuple(float(s) for s in reversed(spacing_mm)))
    # ITK's Maurer distance map: the same exact Euclidean distance as scipy's, 3-4× faster (clinical
    # grids: 1.3 s → 0.35 s on one thread)
    distance = sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    out = np.zeros_like(mask)
    out[box] = sitk.GetArrayViewFromImage(distance) <= margin_mm
    return out


def body_mask(image: Volume, threshold_hu: float = BODY_THRESHOLD_HU) -> np.ndarray:
    """Boolean ``(z, y, x)``: the largest connected tissue component, holes filled slice by slice."""
    tissue = image.array > threshold_hu
    labels, count = ndimage.label(tissue)
    if count == 0:
        return np.ones(image.shape, dtype=bool)
    sizes = ndimage.sum_labels(tissue, labels, index=np.arange(1, count + 1))
    body = labels == (int(np.argmax(sizes)) + 1)
    for z in range(body.shape[0]):
        body[z] = ndimage.binary_fill_holes(body[z])
    return body


def liver_roi(case: Case, margin_mm: float) -> RegionOfInterest:
    """The region the metric sees: liver (label > 0) dilated by ``margin_mm``, else the body.

    Returns a mask on the annotated phase's grid. Falls back to :func:`body_mask` of the
    annotated phase, logging a warning, when the case has no label or its label holds no liver.
    """
    annotated = case.annotated
    if case.label is not None and (case.label.array > 0).any():
        mask = dilate_mm(case.label.array > 0, annotated.spacing_mm, margin_mm)
        return RegionOfInterest(annotated.with_array(mask.astype(np.uint8), kind="label"), "liver", margin_mm)
    reason = "no liver label to focus on" if case.label is None else "its label holds no liver"
    log.warning("%s: %s; registering on the body mask instead of the liver", case.case_id, reason)
    mask = body_mask(annotated)
    return RegionOfInterest(annotated.with_array(mask.astype(np.uint8), kind="label"), "body", 0.0)
