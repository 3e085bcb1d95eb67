"""Baseline fills of the inpainting mask, for the paper's Table V ablation and for comparison.

- :func:`median_fill`: the paper's "median filter" replacement of the inpainter: the hole is
  filled from its rim inwards, each voxel getting the median of the known (or already filled)
  voxels in its in-plane ``k×k`` window (an iterative masked median, one axial slice at a time).
- :func:`mean_fill`: every hole voxel gets the mean HU of the surrounding liver (outside the hole)
  plus, optionally, Gaussian noise with that liver's standard deviation.

Both take HU arrays ``(Z, Y, X)`` and a boolean hole of the same shape and change nothing outside
the hole.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from diff4mmlits.errors import InputError


def _check(image: np.ndarray, hole: np.ndarray) -> None:
    if image.shape != hole.shape or image.ndim != 3:
        raise InputError(f"image {image.shape} and mask {hole.shape} must be the same 3D (z, y, x) shape")


def median_fill(image: np.ndarray, hole: np.ndarray, kernel_vox: int = 5) -> np.ndarray:
    """Iterative masked median, in-plane: peel the hole from its rim inwards.

    Each round, every hole voxel with at least one known voxel in its ``kernel_vox``² window gets
    the median of those known voxels and becomes known. A slice whose hole has no known voxel at
    all keeps its values. Returns a float32 copy; voxels outside ``hole`` are unchanged.
    """
    _check(image, hole)
    if kernel_vox < 3 or kernel_vox % 2 == 0:
        raise InputError(f"median kernel {kernel_vox} voxels: must be odd and ≥ 3")
    out = np.asarray(image, dtype=np.float32).copy()
    todo = np.asarray(hole, dtype=bool).copy()
    half = kernel_vox // 2
    neighbourhood = np.ones((1, kernel_vox, kernel_vox), dtype=bool)
    while todo.any():
        known = ~todo
        front = todo & ndimage.binary_dilation(known, structure=neighbourhood)
        if not front.any():
            break  # slices without any known voxel in reach
        values = np.where(known, out, np.nan)
        padded = np.pad(values, ((0, 0), (half, half), (half, half)), constant_values=np.nan)
        windows = sliding_window_view(padded, (kernel_vox, kernel_vox), axis=(1, 2))  # (Z, Y, X, k, k)
        z, y, x = np.nonzero(front)
        out[z, y, x] = np.nanmedian(windows[z, y, x].reshape(len(z), -1), axis=1)
        todo &= ~front
    return out


def surrounding_liver(hole: np.ndarray, liver: np.ndarray | None, ring_vox: int = 3) -> np.ndarray:
    """Voxels that describe the tissue around the hole: the liver outside the hole, else a ring around it."""
    if liver is not None and (liver & ~hole).any():
        return liver & ~hole
    ring = ndimage.binary_dilation(hole, structure=np.ones((1, 3, 3), bool), iterations=ring_vox) & ~hole
    return ring


def mean_fill(image: np.ndarray, hole: np.ndarray, liver: np.ndarray | None, rng: np.random.Generator | None = None,
              noise: bool = True) -> np.ndarray:
    """Fill the hole with the mean HU of the surrounding liver (+ Gaussian noise of its std when ``noise``).

    ``liver``: boolean liver mask (tumors included is fine: the hole is left out). Returns a float32
    copy; voxels outside ``hole`` are unchanged.
    """
    _check(image, hole)
    out = np.asarray(image, dtype=np.float32).copy()
    hole = np.asarray(hole, dtype=bool)
    if not hole.any():
        return out
    region = surrounding_liver(hole, liver)
    tissue = out[region] if region.any() else out[~hole]
    mean, std = float(tissue.mean()), float(tissue.std())
    count = int(hole.sum())
    fill = np.full(count, mean, dtype=np.float32)
    if noise:
        if rng is None:
            raise ValueError("mean_fill with noise needs an rng")
        fill += rng.normal(0.0, std, size=count).astype(np.float32)
    out[hole] = fill
    return out
