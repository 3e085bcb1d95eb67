"""Putting a synthesized crop back into the normal CT, and the synthetic case's label.

The decoded crop replaces the normal CT inside the dilated tumor mask and fades out over
``feather_mm`` around it (a raised-cosine ramp of the distance to the mask, in mm). Beyond that
the weight is exactly zero and the normal CT's voxels are kept bit-for-bit: the autoencoder's
reconstruction error never reaches the rest of the volume.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from diff4mmlits import LABEL_LIVER, LABEL_TUMOR
from diff4mmlits.synthesize.crops import CropBox


def feather_weight(mask: np.ndarray, spacing_mm: tuple[float, float, float], feather_mm: float) -> np.ndarray:
    """Blend weight ``(z, y, x)`` float32: 1 in ``mask``, a cosine ramp to 0 at ``feather_mm`` from it, 0 beyond."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.zeros(mask.shape, np.float32)
    if feather_mm <= 0:
        return mask.astype(np.float32)
    distance = ndimage.distance_transform_edt(~mask, sampling=spacing_mm)
    ramp = 0.5 * (1.0 + np.cos(np.pi * np.clip(distance / feather_mm, 0.0, 1.0)))
    return np.where(distance < feather_mm, ramp, 0.0).astype(np.float32)


def blend_crop(normal: np.ndarray, synthetic_crop: np.ndarray, weight_crop: np.ndarray, box: CropBox) -> np.ndarray:
    """``normal`` with ``w · synthetic + (1 − w) · normal`` pasted where the crop's weight is positive.

    Args:
        normal: the whole phase ``(Z, Y, X)``, HU (any dtype; integers are rounded back).
        synthetic_crop: ``(c, c, c)`` HU, the decoded crop.
        weight_crop: ``(c, c, c)`` in [0, 1] (see :func:`feather_weight`).
        box: where the crop lies in ``normal``.

    Returns a new array of ``normal``'s dtype; voxels with weight 0 are copied unchanged.
    """
    out = normal.copy()
    region = out[box.inside]
    weight = weight_crop[box.in_crop]
    synthetic = synthetic_crop[box.in_crop]
    touched = weight > 0
    mixed = weight[touched] * synthetic[touched] + (1.0 - weight[touched]) * region[touched].astype(np.float32)
    if np.issubdtype(out.dtype, np.integer):
        info = np.iinfo(out.dtype)
        mixed = np.clip(np.round(mixed), info.min, info.max)
    region[touched] = mixed.astype(out.dtype)
    return out


NOISE_FILTER_SIGMA_VOX = 1.0


def noise_sigma_hu(array: np.ndarray, region: np.ndarray) -> float:
    """Standard deviation of the voxel noise of ``array`` in ``region`` (HU), from its high-pass residual.

    ``r = x − G_σ x`` with a Gaussian ``G`` of σ = 1 voxel; for white noise of standard deviation
    ``s`` the residual's is ``s·√(1 − 2·g₀ + Σg²)`` (g the 3D kernel), which is divided out. Smooth
    anatomy barely passes the high-pass, so this measures the noise. 0 when the region is empty.
    """
    region = ndimage.binary_erosion(np.asarray(region, bool))
    if region.sum() < 8:
        return 0.0
    residual = array.astype(np.float32) - ndimage.gaussian_filter(array.astype(np.float32), NOISE_FILTER_SIGMA_VOX)
    delta = np.zeros(33)
    delta[16] = 1.0
    kernel = ndimage.gaussian_filter1d(delta, NOISE_FILTER_SIGMA_VOX)
    gain = np.sqrt(1.0 - 2.0 * kernel[16] ** 3 + float(np.sum(kernel**2)) ** 3)
    return float(residual[region].std() / gain)


def synthetic_label(normal_label: np.ndarray, tumor: np.ndarray) -> np.ndarray:
    """The label of a synthetic case: the normal case's liver (label > 0) as 1, the new tumor as 2 (uint8)."""
    label = (np.asarray(normal_label) > 0).astype(np.uint8) * LABEL_LIVER
    label[np.asarray(tumor, dtype=bool)] = LABEL_TUMOR
    return label


def set_noise_inside(painted: np.ndarray, inside: np.ndarray, target_hu: float, rng: np.random.Generator) -> np.ndarray:
    """``painted`` (HU) with the voxel noise :func:`noise_sigma_hu` inside ``inside`` brought to
    ``target_hu``: its fine residual ``x − G₁x`` scaled down where grainier, white noise added where
    smoother; the smooth part (enhancement, edges) kept. Unchanged where ``inside`` is too small to
    measure."""
    have = noise_sigma_hu(painted, inside)
    region = np.asarray(inside, bool)
    if have <= 0.0 or target_hu <= 0.0:
        return painted
    out = painted.astype(np.float32, copy=True)
    if have > target_hu:
        smooth = ndimage.gaussian_filter(out, NOISE_FILTER_SIGMA_VOX)
        out[region] = smooth[region] + (out[region] - smooth[region]) * (target_hu / have)
    else:
        sigma = float(np.sqrt(target_hu**2 - have**2))
        out[region] += sigma * rng.standard_normal(int(region.sum())).astype(np.float32)
    return out

