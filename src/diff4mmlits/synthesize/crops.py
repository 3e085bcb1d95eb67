"""Cubic crops around a point and the conditioning mask (HU ↔ [-1, 1]: :mod:`diff4mmlits.data.intensity`).

The autoencoder and the diffusion model see fixed-size cubic crops; a crop near the edge of a
volume is padded (with the bottom of the window, i.e. air-like) so that every crop has the same
shape. :class:`CropBox` remembers where the crop came from, so a result can be pasted back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diff4mmlits import LABEL_TUMOR
from diff4mmlits.data.volume import Volume


@dataclass(frozen=True)
class CropBox:
    """Where a cubic crop of edge ``size`` lies in a volume of shape ``shape`` (all voxels, (z, y, x)).

    ``start`` may be negative or reach past the volume: those voxels are padding.
    """

    start: tuple[int, int, int]
    size: int
    shape: tuple[int, int, int]

    @property
    def inside(self) -> tuple[slice, slice, slice]:
        """Slices of the volume that the crop covers."""
        return tuple(slice(max(s, 0), min(s + self.size, n)) for s, n in zip(self.start, self.shape))  # type: ignore[return-value]

    @property
    def in_crop(self) -> tuple[slice, slice, slice]:
        """Slices of the crop that hold volume voxels (the rest is padding)."""
        return tuple(slice(max(-s, 0), max(-s, 0) + (v.stop - v.start)) for s, v in zip(self.start, self.inside))  # type: ignore[return-value]


def crop_box(centre_vox: tuple[float, float, float] | np.ndarray, size: int, shape: tuple[int, int, int]) -> CropBox:
    """The cubic crop of edge ``size`` centred on ``centre_vox``, shifted to stay inside the volume.

    It only reaches past the volume along axes shorter than ``size``.
    """
    start = []
    for c, n in zip(np.asarray(centre_vox, dtype=float), shape):
        s = int(round(c)) - size // 2
        if n >= size:
            s = min(max(s, 0), n - size)
        else:
            s = -((size - n) // 2)
        start.append(s)
    return CropBox(start=tuple(start), size=int(size), shape=tuple(int(n) for n in shape))  # type: ignore[arg-type]


def extract_crop(array: np.ndarray, box: CropBox, fill: float) -> np.ndarray:
    """The crop ``(size, size, size)`` of ``array`` (float32), padding with ``fill``."""
    crop = np.full((box.size,) * 3, fill, dtype=np.float32)
    crop[box.in_crop] = array[box.inside]
    return crop


MASKED_FILL_UNIT = 0.0
"""Value of the masked-out voxels in the autoencoder's [-1, 1] range (about 40 HU), at training and synthesis."""


def masked_unit(unit: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The masked CT ``x ⊙ (1 − m) + fill · m`` in the [-1, 1] range: float32, the broadcast shape of ``unit`` and ``mask``."""
    return np.where(mask, np.float32(MASKED_FILL_UNIT), unit).astype(np.float32)


def dilate_tumor_mask(tumor: np.ndarray, close_vox: int = 5, dilate_vox: int = 3) -> np.ndarray:
    """The paper's mask preparation (§III-A) on a boolean ``(z, y, x)`` tumor mask: the inpaint stage's
    :func:`diff4mmlits.inpaint.mask.dilate_tumor_mask` (per tumor, a ``close_vox`` closing then one
    ``dilate_vox`` dilation in each axial slice), so that the synthesizer conditions on the same
    region the inpainter removed. Boolean out.
    """
    from diff4mmlits.inpaint.mask import dilate_tumor_mask as prepare

    label = Volume(np.asarray(tumor, dtype=np.uint8) * np.uint8(LABEL_TUMOR), (1.0, 1.0, 1.0), kind="label")
    return prepare(label, close_kernel_vox=close_vox, dilate_kernel_vox=dilate_vox).array > 0
