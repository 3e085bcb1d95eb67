"""Mask preparation of the Normal CT Generator (paper §III-A).

"For each tumor region in the portal venous phase (PVP) mask, a 5×5 kernel is first employed for
morphological closing, followed by a single iteration of dilation using a 3×3 kernel": the closed
and dilated annotation covers each tumor in every roughly aligned phase, and it is the region the
inpainter fills.

Each tumor component (3D, 26-connected) is treated on its own so that the closing never bridges
two separate tumors; both operations act in the axial plane (square in-plane kernels, one slice at
a time); the result is the union over components.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from diff4mmlits import LABEL_TUMOR
from diff4mmlits.data.volume import Volume
from diff4mmlits.errors import InputError


def kernel_vox_from_mm(size_mm: float, spacing_yx_mm: tuple[float, float]) -> tuple[int, int]:
    """In-plane kernel size in voxels ``(y, x)`` for a kernel ``size_mm`` wide: the odd count nearest to it (≥ 1)."""
    if size_mm <= 0:
        raise InputError(f"kernel size {size_mm} mm: must be positive")
    sizes = [2 * max(0, int(np.floor((size_mm / spacing - 1.0) / 2.0 + 0.5))) + 1 for spacing in spacing_yx_mm]
    return sizes[0], sizes[1]


def _square(size_yx: tuple[int, int]) -> np.ndarray:
    """A ``(1, Y, X)`` in-plane structuring element of ones (the paper's k×k kernel)."""
    for size in size_yx:
        if size < 1 or size % 2 == 0:
            raise InputError(f"kernel size {size} voxels: must be odd and ≥ 1 (e.g. 3 or 5)")
    return np.ones((1, *size_yx), dtype=bool)


def close_and_dilate(component: np.ndarray, close_yx: tuple[int, int], dilate_yx: tuple[int, int]) -> np.ndarray:
    """In-plane closing then one dilation of a boolean ``(z, y, x)`` mask; the image border does not erode it."""
    close_el, dilate_el = _square(close_yx), _square(dilate_yx)
    pad_y = close_yx[0] // 2 + dilate_yx[0] // 2
    pad_x = close_yx[1] // 2 + dilate_yx[1] // 2
    padded = np.pad(component, ((0, 0), (pad_y, pad_y), (pad_x, pad_x)))
    closed = ndimage.binary_closing(padded, structure=close_el)
    dilated = ndimage.binary_dilation(closed, structure=dilate_el)
    return dilated[:, pad_y:pad_y + component.shape[1], pad_x:pad_x + component.shape[2]]


def dilate_tumor_mask(
    label: Volume,
    close_kernel_vox: int = 5,
    dilate_kernel_vox: int = 3,
    close_kernel_mm: float | None = None,
    dilate_kernel_mm: float | None = None,
    tumor_label: int = LABEL_TUMOR,
) -> Volume:
    """The inpainting mask: per tumor component, a closing then one dilation in each axial slice; their union.

    Args:
        label: ``(z, y, x)`` label map (0 background, 1 liver, 2 tumor) on the annotated phase.
        close_kernel_vox, dilate_kernel_vox: square in-plane kernel sizes in voxels (paper: 5 and 3).
        close_kernel_mm, dilate_kernel_mm: when given, the kernel sizes in mm instead (converted per
            in-plane axis with the label's spacing to the nearest odd voxel count).
        tumor_label: the label id of tumors.

    Returns:
        a ``uint8`` label volume on the label's grid, 1 inside the region to inpaint. An empty
        tumor mask gives an empty result.
    """
    spacing_yx = (label.spacing_mm[1], label.spacing_mm[2])
    close_yx = kernel_vox_from_mm(close_kernel_mm, spacing_yx) if close_kernel_mm else (close_kernel_vox,) * 2
    dilate_yx = kernel_vox_from_mm(dilate_kernel_mm, spacing_yx) if dilate_kernel_mm else (dilate_kernel_vox,) * 2
    _square(close_yx), _square(dilate_yx)  # validate even when there is no tumor
    tumor = np.asarray(label.array) == tumor_label
    result = np.zeros(tumor.shape, dtype=bool)
    components, count = ndimage.label(tumor, structure=np.ones((3, 3, 3), dtype=bool))
    if count == 0:
        return label.with_array(result.astype(np.uint8), kind="label")
    margin_y = close_yx[0] // 2 + dilate_yx[0] // 2
    margin_x = close_yx[1] // 2 + dilate_yx[1] // 2
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        z, y, x = box
        y0, y1 = max(0, y.start - margin_y), min(tumor.shape[1], y.stop + margin_y)
        x0, x1 = max(0, x.start - margin_x), min(tumor.shape[2], x.stop + margin_x)
        crop = components[z, y0:y1, x0:x1] == index
        result[z, y0:y1, x0:x1] |= close_and_dilate(crop, close_yx, dilate_yx)
    return label.with_array(result.astype(np.uint8), kind="label")


def normal_label(label: Volume, tumor_label: int = LABEL_TUMOR, liver_label: int = 1) -> Volume:
    """The label of the tumor-free ("normal") case: tumor voxels become liver."""
    array = np.asarray(label.array).copy()
    array[array == tumor_label] = liver_label
    return label.with_array(array.astype(np.uint8), kind="label")
