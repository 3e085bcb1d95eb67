"""One synthetic case from one normal case: draw the tumors, paint each in its crop, blend, label.

What every painter shares (paper §III-B, inference): random tumor parameters from the generator,
one mask per tumor on the annotated grid, the same mask for every phase (so the synthetic phases
are strictly aligned), a cubic crop around the tumor that a method paints, and the feathered
blend back into the normal CT. A method is one function, :data:`CropPainter`.

Issue 14 adds what makes the cases like the dataset's: with the real tumors of the training split
known, each tumor's count, shape and per-phase enhancement profile are drawn from them
(:func:`~diff4mmlits.synthesize.tumor_masks.sample_tumor_params`), centres keep off the large
vessels, and each painted tumor passes quality control
(:class:`~diff4mmlits.synthesize.quality.TumorQualityControl`) or is painted again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage

from diff4mmlits.data.case import Case
from diff4mmlits.errors import InputError
from diff4mmlits.synthesize.blend import blend_crop, feather_weight, synthetic_label
from diff4mmlits.synthesize.config import TumorMaskConfig
from diff4mmlits.synthesize.contrast import MIN_VOXELS, TumorContrast, ring_contrast, tumor_layers
from diff4mmlits.synthesize.crops import crop_box, dilate_tumor_mask, extract_crop
from diff4mmlits.synthesize.quality import TumorQualityControl
from diff4mmlits.synthesize.tumor_masks import draw_tumor_mask, large_vessel_mask, sample_tumor_params

CropPainter = Callable[
    [dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, np.random.Generator, "dict[str, float] | None"],
    tuple[dict[str, np.ndarray], dict[str, Any]],
]
"""``(crops_hu, condition, tumor, liver, rng, profile_hu) -> (painted_hu, record)``.

``crops_hu``: phase → ``(c, c, c)`` HU crop of the normal CT; ``condition``: the dilated tumor
mask (boolean crop; the region the method may repaint); ``tumor``: the tumor mask itself;
``liver``: the liver mask; ``rng``: the case's generator; ``profile_hu``: phase → the
tumor-to-liver contrast to paint, HU (drawn from a real tumor; ``None`` when no real tumor is
known; a method may ignore it). Returns phase → painted ``(c, c, c)`` HU
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
    real_tumors: list[TumorContrast] | None = None,
    quality: TumorQualityControl | None = None,
    retries: int = 2,
    profile_hu: dict[str, float] | None = None,
    calibrate: bool = False,
    calibrate_edge: bool = False,
) -> tuple[Case, dict[str, Any]]:
    """Paint random tumors into ``normal`` with ``paint_crop``; return the synthetic case and its provenance.

    Args:
        normal: a tumor-free case, every phase on the label's grid; its label's liver (> 0) is kept.
        rng: every random choice (tumor parameters, then the method's draws, in a fixed order).
        paint_crop: the method (see :data:`CropPainter`).
        config: tumor counts, sizes, shapes and placement.
        crop_vox: the edge of the crop a method paints, voxels.
        feather_mm: width of the blend outside the dilated mask, mm.
        close_vox, dilate_vox: the paper's closing and dilation of the tumor mask into the
            condition mask (the same as at training).
        largest_real_radius_mm: the largest real tumor the method learned from (equivalent
            sphere radius); semi-axes are capped at :data:`SIZE_MARGIN` times it, since a method
            cannot paint what it never saw.
        real_tumors: the training split's measured tumors (shapes, counts, enhancement profiles).
        quality: checks each painted tumor; a rejected one is painted again (fresh noise) up to
            ``retries`` times, then left out (unless it is the case's only tumor: a synthetic case
            always has one, recorded as ``kept_despite_quality``).
        profile_hu: one enhancement profile for every tumor (phase → HU), instead of drawn ones.
        calibrate: shift each painted tumor so that the case shows its profile exactly
            (:func:`calibrate_contrast`, measured after the blend).
        calibrate_edge: with ``calibrate``, also give the tumor's outermost voxels and the liver
            just outside it the share of the contrast its reference real tumor shows there
            (its ``edge_fraction``; tumors without one get the plain calibration).

    Returns the synthetic case (same id, phases and grid as ``normal``; label 0/1/2) and a dict
    with each tumor's parameters, voxel count, quality verdicts and the method's record, and the
    counts of rejected paintings and left-out tumors.
    """
    normal.require_registered()
    if normal.label is None:
        raise InputError(f"{normal.case_id}: a normal case needs its liver label to place tumors in")
    grid = normal.annotated
    liver = normal.liver_mask
    cap = largest_semi_axis_mm(crop_vox, grid.spacing_mm, feather_mm, dilate_vox, config)
    if largest_real_radius_mm:
        cap = min(cap, SIZE_MARGIN * largest_real_radius_mm)
    arrays = {name: volume.array for name, volume in normal.phases.items()}
    vessels = large_vessel_mask(arrays, liver, grid.spacing_mm) if config.vessel_margin_mm > 0 else None
    params = sample_tumor_params(rng, liver, grid.spacing_mm, config, max_semi_axis_mm=cap, real_tumors=real_tumors,
                                 vessels=vessels)
    tumors = np.zeros(grid.shape, dtype=bool)
    records, rejected, left_out = [], 0, 0
    fallback: tuple[int, dict[str, np.ndarray], np.ndarray, Any, np.ndarray] | None = None
    for tumor_params in params:
        target = profile_hu if profile_hu is not None else tumor_params.profile_hu
        mask = draw_tumor_mask(tumor_params, grid, liver)
        condition = dilate_tumor_mask(mask, close_vox, dilate_vox)
        box = crop_box(tumor_params.centre_vox, crop_vox, grid.shape)
        condition_crop = extract_crop(condition, box, fill=0.0) > 0.5
        tumor_crop = extract_crop(mask, box, fill=0.0) > 0.5
        liver_crop = extract_crop(liver, box, fill=0.0) > 0.5
        crops = {name: extract_crop(array, box, fill=FILL_HU) for name, array in arrays.items()}
        weight = feather_weight(condition_crop, grid.spacing_mm, feather_mm)
        verdicts = []
        for _attempt in range(1 + (retries if quality is not None else 0)):
            painted, record = paint_crop(crops, condition_crop, tumor_crop, liver_crop, rng, target)
            if calibrate and target:
                edge = tumor_params.edge_fraction if calibrate_edge else None
                painted, shifts = calibrate_contrast(painted, crops, tumor_crop, liver_crop, target, weight, edge)
                record = {**record, "calibration_shift_hu": shifts}
            if quality is None:
                break
            blended = {name: weight * painted[name] + (1.0 - weight) * crops[name] for name in painted}
            verdict = quality.check(blended, {name: crops[name] for name in painted}, tumor_crop, liver_crop, weight)
            verdicts.append(verdict.to_dict())
            if verdict.accepted:
                break
            rejected += 1
        entry = {**tumor_params.to_dict(), "voxels": int(mask.sum()), "crop_start": list(box.start), **record}
        if quality is not None:
            entry["quality"] = verdicts
            if not verdicts[-1]["accepted"]:
                left_out += 1
                records.append({**entry, "left_out": True})
                if fallback is None:
                    fallback = (len(records) - 1, painted, weight, box, mask)
                continue
        arrays = {name: blend_crop(array, painted[name], weight, box) for name, array in arrays.items()}
        tumors |= mask
        records.append(entry)
    forced = 0
    if not tumors.any() and fallback is not None:
        # every tumor failed quality control: keep the first one rather than write a case without
        # a tumor, and say so (the share of such cases is in the summary)
        index, painted, weight, box, mask = fallback
        arrays = {name: blend_crop(array, painted[name], weight, box) for name, array in arrays.items()}
        tumors |= mask
        records[index] = {**records[index], "left_out": False, "kept_despite_quality": True}
        left_out, forced = left_out - 1, 1
    label = normal.label.with_array(synthetic_label(normal.label.array, tumors))
    phases = {name: normal.phases[name].with_array(array) for name, array in arrays.items()}
    case = Case(case_id=normal.case_id, phases=phases, label=label, annotated_phase=normal.annotated_phase)
    return case, {"tumors": records, "max_semi_axis_mm": cap, "tumor_source": config.source if real_tumors else "classes",
                  "quality_rejected": rejected, "quality_left_out": left_out, "quality_forced": forced,
                  "vessel_voxels": int(vessels.sum()) if vessels is not None else 0}


CALIBRATION_EDGE_SIGMA_VOX = 0.7
"""The calibration shift fades over the tumor's edge (Gaussian σ of the mask, voxels)."""


CALIBRATION_ROUNDS = 3
"""The soft edge also moves the liver ring a little, so the shift is measured and applied again (the
error shrinks geometrically; three rounds leave a few per cent)."""


def calibrate_contrast(painted: dict[str, np.ndarray], normal: dict[str, np.ndarray], tumor: np.ndarray,
                       liver: np.ndarray, profile_hu: dict[str, float], weight: np.ndarray | None = None,
                       edge_fraction: dict[str, float] | None = None,
                       ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Shift each painted phase inside the tumor so that its contrast to the liver ring is ``profile_hu``.

    The contrast is measured as for the real tumors (tumor core − liver ring 1–3 voxels out) on what
    the case will show: ``weight·painted + (1 − weight)·normal`` when the blend ``weight`` is given
    (the ring often lies in the feathered band), else on ``painted``. The shift is added under the
    tumor mask softened at its edge (:data:`CALIBRATION_ROUNDS` times). Phases without a profile
    entry, or a tumor too small to measure, are left as painted.

    With ``edge_fraction`` (``{"edge": f, "outside": g}`` of the real tumor the profile was drawn
    from, :func:`~diff4mmlits.synthesize.contrast.edge_fraction`) the tumor's layers are set one by
    one instead, against the normal CT's liver ring: the core to the profile, the tumor's outermost
    voxel layer to ``f`` times it, the liver layer just outside to ``g`` times it and the ring to
    the normal CT's — so the painted lesion ends where the label does, as the dataset's real ones
    do (a decoder's blur otherwise carries the lesion a voxel past its label, which then teaches a
    segmenter that lesion-dark voxels are liver). Each layer keeps the painted texture; only its
    mean moves.

    Returns the shifted crops and the total shift of the core per phase (HU).
    """
    if edge_fraction is not None:
        layered = _calibrate_layers(painted, normal, tumor, liver, profile_hu, weight, edge_fraction)
        if layered is not None:
            return layered
    soft = ndimage.gaussian_filter(tumor.astype(np.float32), CALIBRATION_EDGE_SIGMA_VOX)
    out, shifts = dict(painted), {}
    for _ in range(CALIBRATION_ROUNDS):
        shown = out if weight is None else {n: weight * out[n] + (1.0 - weight) * normal[n] for n in out}
        measured = ring_contrast(shown, tumor, liver & ~tumor)
        if measured is None:
            return out, shifts
        for name, contrast in measured[0].items():
            if name in profile_hu:
                shift = float(profile_hu[name]) - contrast
                out[name] = (out[name] + soft * shift).astype(np.float32)
                shifts[name] = round(shifts.get(name, 0.0) + shift, 2)
    return out, shifts


LAYER_MIN_WEIGHT = 0.05
"""A layer whose mean blend weight is below this is left as it is (the painting barely shows there)."""


def _calibrate_layers(painted: dict[str, np.ndarray], normal: dict[str, np.ndarray], tumor: np.ndarray,
                      liver: np.ndarray, profile_hu: dict[str, float], weight: np.ndarray | None,
                      edge_fraction: dict[str, float]) -> tuple[dict[str, np.ndarray], dict[str, float]] | None:
    """:func:`calibrate_contrast`'s layer by layer calibration; ``None`` when a layer is too small."""
    layers = tumor_layers(tumor, liver & ~tumor)
    if min(int(mask.sum()) for mask in layers.values()) < MIN_VOXELS:
        return None
    share = {"core": 1.0, "edge": float(edge_fraction["edge"]), "outside": float(edge_fraction["outside"]), "ring": 0.0}
    blend = np.ones(tumor.shape, np.float32) if weight is None else weight
    out, shifts = dict(painted), {}
    for name in painted:
        if name not in profile_hu:
            continue
        base = float(normal[name][layers["ring"]].mean())
        array = out[name].astype(np.float32).copy()
        for region, fraction in share.items():
            mask = layers[region]
            w = blend[mask]
            if float(w.mean()) < LAYER_MIN_WEIGHT:
                continue
            shown = w * array[mask] + (1.0 - w) * normal[name][mask]
            need = base + fraction * float(profile_hu[name]) - float(shown.mean())
            array[mask] += need / float(w.mean())
            if region == "core":
                shifts[name] = round(need, 2)
        out[name] = array
    return out, shifts
