"""Resampling a phase onto the annotated phase's grid through a transform.

Transforms follow ITK's resampling convention: a phase's transform maps points of the annotated
(fixed) grid to points of the phase (moving), so ``sitk.Resample(phase, pvp, transform)`` is the
registered phase. Images are interpolated linearly (float32 HU), labels by nearest neighbour;
voxels that fall outside the phase's field of view get ``fill_hu`` (−1024 HU, air).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from diff4mmlits.data.io import from_sitk, to_sitk
from diff4mmlits.data.volume import Volume

FILL_HU = -1024.0


def identity_transform() -> sitk.Transform:
    """The identity as a 3D affine transform (an ITK type that 3D Slicer and ITK-SNAP open)."""
    return sitk.AffineTransform(3)


def resample_sitk(moving: sitk.Image, reference: sitk.Image, transform: sitk.Transform, is_label: bool,
                  fill_hu: float = FILL_HU) -> sitk.Image:
    """``sitk.Resample`` with this module's rules (linear → float32 for images, nearest for labels)."""
    if is_label:
        return sitk.Resample(moving, reference, transform, sitk.sitkNearestNeighbor, 0.0, moving.GetPixelID())
    return sitk.Resample(moving, reference, transform, sitk.sitkLinear, float(fill_hu), sitk.sitkFloat32)


def resample_onto(moving: Volume, reference: Volume, transform: sitk.Transform | None = None,
                  fill_hu: float = FILL_HU) -> Volume:
    """``moving`` resampled onto ``reference``'s grid through ``transform`` (identity when ``None``).

    Args:
        moving: a phase (HU) or a label map on its own grid.
        reference: the annotated phase; defines the output grid ``(z, y, x)``.
        transform: maps reference points (mm) to moving points (mm), ITK's convention.
        fill_hu: value outside the moving field of view, for images (labels get 0).

    Returns:
        A volume on ``reference``'s grid: float32 HU for images, the label's dtype for labels.
    """
    transform = transform if transform is not None else identity_transform()
    is_label = moving.kind == "label"
    image = resample_sitk(to_sitk(moving), to_sitk(reference.with_array(np.zeros(reference.shape, np.uint8))),
                          transform, is_label, fill_hu)
    return from_sitk(image, kind=moving.kind)


def dense_transform(transform: sitk.Transform, reference: Volume, spacing_mm: float = 0.0) -> sitk.Transform:
    """``transform`` sampled as a displacement-field transform, so that a B-spline is evaluated once
    instead of once per resampling; linear transforms are returned unchanged.

    The field lies on ``reference``'s grid (``spacing_mm`` 0: it maps every voxel centre exactly as
    ``transform`` does), or on a grid no finer than ``spacing_mm`` whose first and last nodes are
    ``reference``'s first and last voxel centres, interpolated linearly: a 512 × 512 × 100 phase
    then needs a few MB instead of 600 (the registration's deformations are smooth over
    centimetres; the error is measured in ``tests/register/test_resample.py``).
    """
    if transform.IsLinear():
        return transform
    grid = to_sitk(reference.with_array(np.zeros(reference.shape, np.uint8)))
    spacing = np.asarray(grid.GetSpacing(), float)
    if spacing_mm > 0 and np.any(spacing < spacing_mm - 1e-6):
        span = spacing * (np.asarray(grid.GetSize()) - 1)  # first to last voxel centre, mm
        nodes = np.where(spacing < spacing_mm, np.floor(span / spacing_mm) + 1, np.asarray(grid.GetSize())).astype(int)
        nodes = np.maximum(nodes, 2)
        origin = grid.GetOrigin()
        direction = grid.GetDirection()
        grid = sitk.Image([int(v) for v in nodes], sitk.sitkUInt8)
        grid.SetSpacing(tuple(float(v) for v in np.where(span > 0, span / (nodes - 1), spacing)))
        grid.SetOrigin(origin)
        grid.SetDirection(direction)
    to_field = sitk.TransformToDisplacementFieldFilter()
    to_field.SetReferenceImage(grid)
    to_field.SetOutputPixelType(sitk.sitkVectorFloat64)
    return sitk.DisplacementFieldTransform(to_field.Execute(transform))


def displacement_field_mm(transform: sitk.Transform, reference: Volume) -> np.ndarray:
    """``T(p) − p`` at every voxel centre ``p`` of ``reference``: ``(z, y, x, 3)``, (z, y, x) components, mm."""
    grid = to_sitk(reference.with_array(np.zeros(reference.shape, np.uint8)))
    to_field = sitk.TransformToDisplacementFieldFilter()
    to_field.SetReferenceImage(grid)
    to_field.SetOutputPixelType(sitk.sitkVectorFloat64)
    field_xyz = sitk.GetArrayFromImage(to_field.Execute(transform))  # (z, y, x, 3) with (x, y, z) components
    return field_xyz[..., ::-1].copy()
