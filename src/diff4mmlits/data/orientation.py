"""Orientation of volumes: the three-letter code, world-preserving reorientation, and a check that
one phase's anatomy is not mirrored relative to another's.

Phases of one exam are normally stored the same way. When one phase's direction matrix differs
from the annotated phase's, either it was stored otherwise (another axis order or sign: harmless,
registration works in world coordinates) or its header is wrong (the classic RAS/LPS mix-up: the
anatomy is mirrored in world space, and no rigid, affine or B-spline registration can undo that).
:func:`check_phase_orientation` tells the two apart from the images themselves: it aligns the body
centroids and compares how well the phase fits the annotated phase as stored and mirrored along
each world axis; a mirror that fits clearly better is refused with one line.

Codes are ITK's (SimpleITK ``DICOMOrient``): the letter of each array axis in x, y, z order, e.g.
``LPS`` (ITK's and DICOM's default), ``RAS`` (nibabel's canonical form).
"""

from __future__ import annotations

import logging

import numpy as np
import SimpleITK as sitk

from diff4mmlits.data.io import from_sitk, to_sitk
from diff4mmlits.data.volume import Volume
from diff4mmlits.errors import InputError

log = logging.getLogger(__name__)

MIRRORS: dict[str, tuple[float, float, float]] = {
    "left-right": (-1.0, 1.0, 1.0),
    "front-back": (1.0, -1.0, 1.0),
    "rotated 180° in the axial plane": (-1.0, -1.0, 1.0),
    "head-feet": (1.0, 1.0, -1.0),
}
"""World (x, y, z) sign flips tried against the phase as stored."""
MIRROR_MARGIN = 0.1
"""A mirror must correlate better than the stored phase by this much to be called mirrored."""
COARSE_VOX = 40
"""The check runs on the annotated phase's grid coarsened to at most this many voxels per axis."""
BODY_HU = -500.0


def orientation_code(volume: Volume) -> str:
    """The volume's three-letter orientation code (x, y, z array axes), e.g. ``LPS``."""
    probe = Volume(np.zeros((1, 1, 1), np.uint8), volume.spacing_mm, volume.origin_mm, volume.direction, kind="label")
    direction = to_sitk(probe).GetDirection()
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(direction)


def reorient(volume: Volume, code: str) -> Volume:
    """``volume`` with its array axes permuted and flipped to ``code``; every voxel keeps its world
    position (no resampling)."""
    if orientation_code(volume) == code:
        return volume
    return from_sitk(sitk.DICOMOrient(to_sitk(volume), code), kind=volume.kind)


def same_direction(a: Volume, b: Volume, tolerance: float = 1e-3) -> bool:
    return bool(np.allclose(np.asarray(a.direction), np.asarray(b.direction), atol=tolerance))


def mirror_scores(moving: Volume, fixed: Volume) -> dict[str, float]:
    """Correlation (−1…1) of ``moving`` with ``fixed`` inside ``fixed``'s body on a coarse grid, body
    centroids aligned: ``"as stored"`` and each of :data:`MIRRORS` about the centroid."""
    fixed_image = sitk.Cast(to_sitk(fixed), sitk.sitkFloat32)
    moving_image = sitk.Cast(to_sitk(moving), sitk.sitkFloat32)
    factor = max(1.0, max(fixed.shape) / COARSE_VOX)
    size = [max(1, int(round(n / factor))) for n in fixed_image.GetSize()]
    reference = sitk.Image(size, sitk.sitkFloat32)
    reference.SetOrigin(fixed_image.GetOrigin())
    reference.SetDirection(fixed_image.GetDirection())
    reference.SetSpacing([s * n / m for s, n, m in zip(fixed_image.GetSpacing(), fixed_image.GetSize(), size)])
    fixed_coarse = sitk.GetArrayFromImage(sitk.Resample(fixed_image, reference, sitk.Transform(), sitk.sitkLinear, -1000.0))
    body = fixed_coarse > BODY_HU
    if body.sum() < 10:
        return {}
    center_fixed = _body_centroid(fixed_image)
    center_moving = _body_centroid(moving_image)
    scores = {}
    for name, signs in {"as stored": (1.0, 1.0, 1.0), **MIRRORS}.items():
        transform = sitk.AffineTransform(3)
        transform.SetMatrix(np.diag(signs).ravel().tolist())
        transform.SetCenter(center_fixed)
        transform.SetTranslation((np.asarray(center_moving) - np.asarray(center_fixed)).tolist())
        moved = sitk.GetArrayFromImage(sitk.Resample(moving_image, reference, transform, sitk.sitkLinear, -1000.0))
        a = np.clip(fixed_coarse[body], -200, 300)
        b = np.clip(moved[body], -200, 300)
        scores[name] = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else 0.0
    return scores


def _body_centroid(image: sitk.Image) -> tuple[float, float, float]:
    """World position (x, y, z, mm) of the centroid of the voxels above :data:`BODY_HU`."""
    array = sitk.GetArrayViewFromImage(image)
    index = np.argwhere(array > BODY_HU)
    if index.size == 0:
        index = np.argwhere(np.ones_like(array, bool))
    mean = index.mean(0)[::-1]  # (x, y, z) continuous index
    return image.TransformContinuousIndexToPhysicalPoint(mean.tolist())


def check_phase_orientation(case_id: str, name: str, moving: Volume, fixed: Volume, fixed_name: str) -> None:
    """Refuse a phase whose anatomy is mirrored relative to the annotated phase (see the module doc).

    Nothing is checked when both are stored with the same direction; otherwise the difference is
    logged, and :class:`InputError` raised when a mirror fits clearly better than the phase as stored.
    """
    if same_direction(moving, fixed):
        return
    stored, reference = orientation_code(moving), orientation_code(fixed)
    scores = mirror_scores(moving, fixed)
    if not scores:
        return
    mirror, best = max(((k, v) for k, v in scores.items() if k != "as stored"), key=lambda kv: kv[1])
    if best > scores["as stored"] + MIRROR_MARGIN:
        raise InputError(
            f"{case_id}: phase {name} is stored as {stored} where {fixed_name} is {reference}, and its anatomy "
            f"looks mirrored ({mirror}: correlation {best:.2f} mirrored vs {scores['as stored']:.2f} as stored); "
            f"its header is likely wrong (a RAS/LPS mix-up): fix the direction in {name}'s file and rerun")
    log.info("%s: phase %s is stored as %s, %s as %s; registered in world coordinates (the anatomy agrees: "
             "correlation %.2f as stored, at most %.2f mirrored)", case_id, name, stored, fixed_name, reference,
             scores["as stored"], best)
