"""Paper step 2, the Normal CT Generator, on one case: remove the tumors from every phase.

:func:`inpaint_case` is the pure per-case step (in-memory :class:`Case` in, :class:`Case` out);
``stage.py`` reads and writes the run folder around it.
"""

from __future__ import annotations

import zlib

import numpy as np

from diff4mmlits.config import Config
from diff4mmlits.data.case import Case
from diff4mmlits.errors import InputError
from diff4mmlits.inpaint.baselines import mean_fill, median_fill
from diff4mmlits.inpaint.config import InpaintConfig
from diff4mmlits.inpaint.infer import Inpainter
from diff4mmlits.inpaint.mask import dilate_tumor_mask, normal_label
from diff4mmlits.runfolder import INPAINT_MASK

METHODS: tuple[str, ...] = ("ffc", "median", "mean-fill")


def inpaint_mask_of(case: Case, config: InpaintConfig) -> np.ndarray:
    """The closed and dilated tumor mask of a labelled case, boolean ``(Z, Y, X)``."""
    if case.label is None:
        raise InputError(f"{case.case_id}: has no label; inpainting needs the tumor annotation")
    return dilate_tumor_mask(case.label, config.close_kernel_vox, config.dilate_kernel_vox,
                             config.close_kernel_mm, config.dilate_kernel_mm).array > 0


def fill_volume(image: np.ndarray, hole: np.ndarray, phase: str, method: str, config: Config,
                model: Inpainter | None, liver: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """Fill ``hole`` of one ``(Z, Y, X)`` HU volume with ``method``; float32 HU, unchanged outside the hole."""
    if method == "ffc":
        if model is None:
            raise InputError("method ffc needs a trained inpainter; run 'diff4mmlits train-inpainter --run RUN' first")
        return model.fill(image, hole, phase)
    if method == "median":
        return median_fill(image, hole, config.inpaint.median_kernel_vox)
    if method == "mean-fill":
        return mean_fill(image, hole, liver, rng=rng, noise=config.inpaint.mean_fill_noise)
    raise InputError(f"unknown inpainting method {method!r}; choose one of {', '.join(METHODS)}")


def case_rng(seed: int, case_id: str, phase: str) -> np.random.Generator:
    """The random stream of one case's phase (mean-fill noise), from the run's seed."""
    return np.random.default_rng([seed, zlib.crc32(case_id.encode()), zlib.crc32(phase.encode())])


def inpaint_case(case: Case, method: str, model: Inpainter | None, config: Config) -> Case:
    """Paper step "Normal CT Generator": remove the tumors from every phase of a registered case.

    Returns a new :class:`Case` with the same grid: every phase inpainted inside the closed and
    dilated tumor mask (HU, float32; unchanged outside it), the mask as the ``inpaint_mask`` extra
    (uint8), and the "normal" label (tumor voxels set to liver). A case without tumors comes back
    with its phases unchanged and an empty mask.
    """
    case.require_registered()
    hole = inpaint_mask_of(case, config.inpaint)
    label = case.label
    liver = case.liver_mask
    phases = {}
    for name, volume in case.phases.items():
        if hole.any():
            filled = fill_volume(np.asarray(volume.array), hole, name, method, config, model, liver,
                                 case_rng(config.seed, case.case_id, name))
        else:
            filled = np.asarray(volume.array, dtype=np.float32).copy()
        phases[name] = volume.with_array(filled)
    mask_volume = label.with_array(hole.astype(np.uint8), kind="label")
    return Case(case.case_id, phases, normal_label(label), case.annotated_phase, {INPAINT_MASK: mask_volume})
