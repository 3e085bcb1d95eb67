"""Random training holes, as LaMa draws them, plus tumor-like blobs inside the liver.

LaMa trains on "wide" masks: thick irregular strokes and rectangles covering up to about half the
image (Suvorov et al. 2022, §3.3). The holes the Normal CT Generator must fill at inference are
closed and dilated tumor masks inside the liver, so a share of the training holes are blobs of that
shape placed on liver pixels. Sizes scale with the crop (LaMa's values are for 256² crops).

Every function takes the ``np.random.Generator`` it draws from; masks are boolean ``(Y, X)``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _segment_distance(yy: np.ndarray, xx: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Distance (pixels) of every grid point to the segment ``start``–``end`` (``(y, x)`` points)."""
    direction = end - start
    length2 = float(direction @ direction)
    if length2 == 0:
        return np.hypot(yy - start[0], xx - start[1])
    t = np.clip(((yy - start[0]) * direction[0] + (xx - start[1]) * direction[1]) / length2, 0.0, 1.0)
    return np.hypot(yy - (start[0] + t * direction[0]), xx - (start[1] + t * direction[1]))


def irregular_mask(rng: np.random.Generator, shape: tuple[int, int], max_times: int = 5, max_vertices: int = 5) -> np.ndarray:
    """LaMa's thick irregular strokes: 1–``max_times`` polylines of random angle, length and width."""
    height, width = shape
    size = min(height, width)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    mask = np.zeros(shape, dtype=bool)
    for _ in range(int(rng.integers(1, max_times + 1))):
        point = np.array([rng.uniform(0, height), rng.uniform(0, width)])
        for vertex in range(int(rng.integers(1, max_vertices + 1))):
            angle = 0.01 + rng.uniform(0, 4.0)
            if vertex % 2 == 0:
                angle = 2 * np.pi - angle
            length = size * (0.04 + rng.uniform(0, 0.75))
            brush = size * (0.02 + rng.uniform(0, 0.35))
            end = point + length * np.array([np.sin(angle), np.cos(angle)])
            end = np.clip(end, [0, 0], [height - 1, width - 1])
            mask |= _segment_distance(yy, xx, point, end) <= brush / 2
            point = end
    return mask


def box_mask(rng: np.random.Generator, shape: tuple[int, int], max_times: int = 4) -> np.ndarray:
    """LaMa's rectangles: 1–``max_times`` boxes of 12–60 % of the crop's side."""
    height, width = shape
    mask = np.zeros(shape, dtype=bool)
    for _ in range(int(rng.integers(1, max_times + 1))):
        box_h = max(1, int(height * rng.uniform(0.12, 0.6)))
        box_w = max(1, int(width * rng.uniform(0.12, 0.6)))
        y0 = int(rng.integers(0, max(1, height - box_h + 1)))
        x0 = int(rng.integers(0, max(1, width - box_w + 1)))
        mask[y0:y0 + box_h, x0:x0 + box_w] = True
    return mask


def blob_mask(
    rng: np.random.Generator,
    shape: tuple[int, int],
    liver: np.ndarray | None = None,
    max_blobs: int = 3,
    radius_range: tuple[float, float] = (0.03, 0.16),
) -> np.ndarray:
    """Tumor-like blobs: 1–``max_blobs`` ellipses with a wobbly outline, centred on liver pixels.

    ``liver`` is a boolean ``(Y, X)`` slice; without liver pixels the centres are anywhere. Radii
    are a share of the crop's side; the outline is an ellipse whose radius varies smoothly with the
    angle (low-order Fourier terms), like a closed and dilated tumor annotation.
    """
    height, width = shape
    size = min(height, width)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    mask = np.zeros(shape, dtype=bool)
    centres = np.argwhere(liver) if liver is not None and liver.any() else None
    for _ in range(int(rng.integers(1, max_blobs + 1))):
        if centres is not None:
            cy, cx = centres[int(rng.integers(len(centres)))].astype(float)
        else:
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        radius = max(1.5, size * rng.uniform(*radius_range))
        aspect = rng.uniform(0.6, 1.0)
        tilt = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = dy * np.cos(tilt) + dx * np.sin(tilt)
        v = (-dy * np.sin(tilt) + dx * np.cos(tilt)) / aspect
        theta = np.arctan2(v, u)
        wobble = np.ones_like(theta)
        for order in (2, 3, 4):
            wobble += rng.normal(0, 0.08) * np.cos(order * theta + rng.uniform(0, 2 * np.pi))
        mask |= np.hypot(u, v) <= radius * wobble
    return mask


def training_mask(
    rng: np.random.Generator,
    shape: tuple[int, int],
    liver: np.ndarray | None,
    blob_fraction: float = 0.5,
    max_hole_fraction: float = 0.5,
) -> np.ndarray:
    """One training hole ``(Y, X)``: tumor-like blobs in the liver with probability ``blob_fraction``,
    else LaMa's mix of strokes and boxes (each present with probability ½, at least one), holding
    at most ``max_hole_fraction`` of the crop (the smallest of a few draws otherwise)."""
    if rng.uniform() < blob_fraction:
        mask = blob_mask(rng, shape, liver)
        return mask if mask.any() else box_mask(rng, shape, max_times=1)
    best: np.ndarray | None = None
    for _ in range(4):
        kinds = rng.uniform(size=2) < 0.5
        if not kinds.any():
            kinds[int(rng.integers(2))] = True
        mask = np.zeros(shape, dtype=bool)
        if kinds[0]:
            mask |= irregular_mask(rng, shape)
        if kinds[1]:
            mask |= box_mask(rng, shape)
        if best is None or mask.mean() < best.mean():
            best = mask
        if mask.mean() <= max_hole_fraction:
            break
    assert best is not None
    if best.mean() > max_hole_fraction:  # shrink the largest draw until it fits
        while best.mean() > max_hole_fraction and best.any():
            best = ndimage.binary_erosion(best, iterations=2)
    return best
