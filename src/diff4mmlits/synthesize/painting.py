"""One synthetic case from one normal case: draw the tumors, paint each in its crop, blend, label.

What every painter shares (paper §III-B, inference): random tumor parameters from the generator,
one mask per tumor on the annotated grid, the same mask for every phase (so the synthetic phases
are strictly aligned), a cubic crop around the tumor that a method paints, and the feathered
blend back into the normal CT. A method is one function, :data:`CropPainter`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from diff4mmlits.data.case import Case
from diff4mmlits.errors import InputError
from diff4mmlits.synthesize.blend import blend_crop, feather_weight, synthetic_label
from diff4mmlits.synthesize.config import TumorMaskConfig
from diff4mmlits.synthesize.crops import crop_box, dilate_tumor_mask, extract_crop
from diff4mmlits.synthesize.tumor_masks import draw_tumor_mask, sample_tumor_params

CropPainter = Callable[
    [dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, np.random.Generator],
    tuple[dict[str, np.ndarray], dict[str, Any]],
]
"""``(crops_hu, condition, tumor, liver, rng) -> (painted_hu, record)``.

``crops_hu``: phase → ``(c, c, c)`` HU crop of the normal CT; ``condition``: the dilated tumor
mask (boolean crop; the region the method may repaint); ``tumor``: the tumor mask itself;
``liver``: the liver mask; ``rng``: the case's generator. Returns phase → painted ``(c, c, c)`` HU
and a JSON-able record for the provenance (e.g. the noise seed).
"""

FILL_HU = -1000.0
"""HU of the padding of a crop that reaches past the volume."""
SIZE_MARGIN = 1.25
"""Synthetic semi-axes may exceed the largest real tumor's radius by this factor, no more."""


def largest_semi_axis_mm(crop_vox: int, spacing_mm: tuple[float, float, float], feather_mm: float,
                         dilate_vox: int, config: TumorMaskConfig) -> float:
    """The largest semi-axis whose deformed, dilated and feathered tumor still fits the crop, mm."""
    half_mm = min((crop_vox / 2 - 1) * s for s in spacing_mm)
    room = half_mm - feather_mm - (dilate_vox // 2) * max(spacing_mm)
    largest = room / (1.0 + 3.0 * config.elastic_amplitude)
    if largest <= max(spacing_mm):
        raise InputError(
            f"a crop of {crop_vox} voxels of {max(spacing_mm):.3g} mm leaves no room for a tumor with a "
            f"{feather_mm} mm feather; raise diffusion.crop_vox or lower synthesize.feather_mm"
        )
    return largest


def paint_tumors(
    normal: Case,
    rng: np.random.Generator,
    paint_crop: CropPainter,
    config: TumorMaskConfig,
    crop_vox: int,
    feather_mm: float,
    close_vox: int,
    dilate_vox: int,
    largest_real_radius_mm: float | None = None,
) -> tuple[Case, dict[str, Any]]:
    """Paint random tumors into ``normal`` with ``paint_crop``; return the synthetic case and its provenance.

    Args:
        normal: a tumor-free case, every phase on the label's grid; its label's liver (> 0) is kept.
        rng: every random choice (tumor parameters, then the method's draws, in a fixed order).
        paint_crop: the method (see :data:`CropPainter`).
        config: tumor size classes and shapes.
        crop_vox: the edge of the crop a method paints, voxels.
        feather_mm: width of the blend outside the dilated mask, mm.
        close_vox, dilate_vox: the paper's closing and dilation of the tumor mask into the
            condition mask (the same as at training).
        largest_real_radius_mm: the largest real tumor the method learned from (equivalent
            sphere radius); semi-axes are capped at :data:`SIZE_MARGIN` times it, since a method
            cannot paint what it never saw.

    Returns the synthetic case (same id, phases and grid as ``normal``; label 0/1/2) and a dict
    ``{"tumors": [...]}`` with each tumor's parameters, voxel count and the method's record.
    """
    normal.require_registered()
    if normal.label is None:
        raise InputError(f"{normal.case_id}: a normal case needs its liver label to place tumors in")
    grid = normal.annotated
    liver = normal.liver_mask
    cap = largest_semi_axis_mm(crop_vox, grid.spacing_mm, feather_mm, dilate_vox, config)
    if largest_real_radius_mm:
        cap = min(cap, SIZE_MARGIN * largest_real_radius_mm)
    params = sample_tumor_params(rng, liver, grid.spacing_mm, config, max_semi_axis_mm=cap)
    arrays = {name: volume.array for name, volume in normal.phases.items()}
    tumors = np.zeros(grid.shape, dtype=bool)
    records = []
    for tumor_params in params:
        mask = draw_tumor_mask(tumor_params, grid, liver)
        condition = dilate_tumor_mask(mask, close_vox, dilate_vox)
        box = crop_box(tumor_params.centre_vox, crop_vox, grid.shape)
        condition_crop = extract_crop(condition, box, fill=0.0) > 0.5
        crops = {name: extract_crop(array, box, fill=FILL_HU) for name, array in arrays.items()}
        painted, record = paint_crop(crops, condition_crop, extract_crop(mask, box, fill=0.0) > 0.5,
                                     extract_crop(liver, box, fill=0.0) > 0.5, rng)
        weight = feather_weight(condition_crop, grid.spacing_mm, feather_mm)
        arrays = {name: blend_crop(array, painted[name], weight, box) for name, array in arrays.items()}
        tumors |= mask
        records.append({**tumor_params.to_dict(), "voxels": int(mask.sum()), "crop_start": list(box.start), **record})
    label = normal.label.with_array(synthetic_label(normal.label.array, tumors))
    phases = {name: normal.phases[name].with_array(array) for name, array in arrays.items()}
    case = Case(case_id=normal.case_id, phases=phases, label=label, annotated_phase=normal.annotated_phase)
    return case, {"tumors": records, "max_semi_axis_mm": cap}
