"""The liver-region cascade (nnU-Net's cascade, the LiTS winners' two-stage design).

Stage one finds the liver on a coarse grid (:func:`liver_spacing`); stage two crops every phase to
the liver's bounding box plus a margin in mm (:func:`liver_box`, :func:`crop_case`) and segments
liver and tumor there at a fine spacing (:func:`tumor_spacing`: the median spacing, made finer
in-plane where the training set's small tumors would otherwise span too few voxels). Training
crops come from the registered label; prediction crops around stage one's liver and pastes stage
two's labels back onto the annotated phase's original grid (:func:`paste_label`).

Pure functions on :class:`~diff4mmlits.data.case.Case` and :class:`~diff4mmlits.data.volume.Volume`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from diff4mmlits import LABEL_TUMOR
from diff4mmlits.data.case import Case
from diff4mmlits.data.measures import equivalent_radius_mm
from diff4mmlits.data.volume import Volume

Box = tuple[slice, slice, slice]
"""Index ranges (z, y, x) of a box on a grid."""

LIVER_MODEL = "liver"
"""Stage one's model folder, inside the segmenter's folder."""


def liver_box(liver: np.ndarray, spacing_mm: Sequence[float], margin_mm: float) -> Box:
    """The bounding box of ``liver`` (boolean ``(z, y, x)``) grown by ``margin_mm`` on every side,
    clipped to the grid; the whole grid when the mask is empty."""
    liver = np.asarray(liver, dtype=bool)
    if not liver.any():
        return tuple(slice(0, n) for n in liver.shape)  # type: ignore[return-value]
    where = np.argwhere(liver)
    margin = np.ceil(margin_mm / np.asarray(spacing_mm, dtype=np.float64)).astype(int)
    low = np.maximum(where.min(axis=0) - margin, 0)
    high = np.minimum(where.max(axis=0) + 1 + margin, liver.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))  # type: ignore[return-value]


def crop_volume(volume: Volume, box: Box) -> Volume:
    """The part of ``volume`` inside ``box``, on a grid whose origin is the box's first voxel."""
    start = np.array([s.start for s in box], dtype=np.float64)
    origin = volume.index_to_world(start)
    array = np.ascontiguousarray(volume.array[box])
    return Volume(array, volume.spacing_mm, tuple(origin), volume.direction, volume.kind)


def crop_case(case: Case, box: Box) -> Case:
    """Every phase, the label and the extras of a registered case cropped to ``box``."""
    case.require_registered()
    return Case(
        case.case_id,
        {name: crop_volume(volume, box) for name, volume in case.phases.items()},
        crop_volume(case.label, box) if case.label is not None else None,
        case.annotated_phase,
        {name: crop_volume(volume, box) for name, volume in case.extras.items()},
    )


def crop_to_liver(case: Case, margin_mm: float, liver: np.ndarray | None = None) -> Case:
    """A registered case cropped to its liver (the label's, or ``liver`` given on its grid) plus the margin."""
    mask = case.liver_mask if liver is None else liver
    return crop_case(case, liver_box(mask, case.annotated.spacing_mm, margin_mm))


def paste_label(label: Volume, grid: Volume, box: Box) -> Volume:
    """A label computed on ``box`` of ``grid`` placed back on the whole grid (0 outside the box)."""
    full = np.zeros(grid.shape, dtype=np.uint8)
    full[box] = np.asarray(label.array, dtype=np.uint8)
    return grid.with_array(full, kind="label")


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a boolean mask (empty stays empty)."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if count <= 1:
        return labels > 0
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


def liver_spacing(spacings_mm: Sequence[Sequence[float]], shapes: Sequence[Sequence[int]], max_vox: int) -> tuple[float, float, float]:
    """Stage one's spacing: the median spacing, coarsened uniformly until the median image's longest
    extent spans at most ``max_vox`` voxels (never finer than the median)."""
    spacing = np.median(np.asarray(spacings_mm, dtype=np.float64), axis=0)
    extent = np.median(np.asarray(shapes, dtype=np.float64) * np.asarray(spacings_mm, dtype=np.float64), axis=0)
    factor = max(1.0, float((extent / spacing).max()) / max_vox)
    return tuple(float(round(v, 4)) for v in spacing * factor)  # type: ignore[return-value]


def small_tumor_diameter_mm(cases: Sequence[Case], percentile: float = 10.0) -> float | None:
    """The ``percentile`` of the training tumors' equivalent-sphere diameters, mm (None without tumors)."""
    diameters = []
    for case in cases:
        if case.label is None:
            continue
        components, count = ndimage.label(case.label.array == LABEL_TUMOR, structure=np.ones((3, 3, 3), bool))
        sizes = np.bincount(components.ravel())[1:]
        diameters += [2 * equivalent_radius_mm(int(v), case.annotated.spacing_mm) for v in sizes if v > 0]
    return float(np.percentile(diameters, percentile)) if diameters else None


def tumor_spacing(median_spacing_mm: Sequence[float], small_tumor_mm: float | None, min_tumor_vox: float) -> tuple[float, float, float]:
    """Stage two's spacing: the median spacing, with the in-plane axes made fine enough that a small
    tumor (``small_tumor_mm`` across) spans ``min_tumor_vox`` voxels; the slice axis is kept (as
    nnU-Net, no up-sampling across thick slices)."""
    spacing = np.asarray(median_spacing_mm, dtype=np.float64).copy()
    if small_tumor_mm is not None and min_tumor_vox > 0:
        cap = small_tumor_mm / min_tumor_vox
        spacing[1:] = np.minimum(spacing[1:], cap)
    return tuple(float(round(v, 4)) for v in spacing)  # type: ignore[return-value]
