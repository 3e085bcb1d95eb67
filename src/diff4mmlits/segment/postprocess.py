"""Post-processing of predicted labels (paper §IV-B: "retaining only tumors located within the liver region").

The liver is the largest connected component of the foreground (liver ∪ tumor, 26-connectivity);
everything outside it — other liver-like blobs and the tumors in them or on their own — becomes
background. A tumor touching the liver component is part of it and is kept; a tumor floating
outside is dropped. Optionally, tumor components smaller than a volume are turned into liver.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from diff4mmlits import LABEL_BACKGROUND, LABEL_LIVER, LABEL_TUMOR

FULL_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a boolean ``(z, y, x)`` mask (empty stays empty)."""
    labels, count = ndimage.label(mask, structure=FULL_CONNECTIVITY)
    if count <= 1:
        return labels > 0
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def keep_tumors_in_liver(label: np.ndarray) -> np.ndarray:
    """Keep only the largest foreground component (the liver with its tumors); the rest is background."""
    out = label.copy()
    out[~largest_component(label > 0)] = LABEL_BACKGROUND
    return out


def remove_small_tumors(label: np.ndarray, spacing_mm: tuple[float, float, float], min_volume_mm3: float) -> np.ndarray:
    """Relabel tumor components smaller than ``min_volume_mm3`` as liver."""
    if min_volume_mm3 <= 0:
        return label
    components, count = ndimage.label(label == LABEL_TUMOR, structure=FULL_CONNECTIVITY)
    if count == 0:
        return label
    voxel_mm3 = float(np.prod(spacing_mm))
    sizes = np.bincount(components.ravel()) * voxel_mm3
    small = np.isin(components, np.nonzero(sizes < min_volume_mm3)[0]) & (components > 0)
    out = label.copy()
    out[small] = LABEL_LIVER
    return out


def postprocess_label(label: np.ndarray, spacing_mm: tuple[float, float, float], min_tumor_volume_mm3: float = 0.0) -> np.ndarray:
    """The paper's post-processing: liver = largest component, tumors only inside it (uint8 out)."""
    out = keep_tumors_in_liver(label.astype(np.uint8, copy=False))
    return remove_small_tumors(out, spacing_mm, min_tumor_volume_mm3).astype(np.uint8, copy=False)
