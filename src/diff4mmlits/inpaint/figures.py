"""The inpainting figure of the report: per phase, the original, the mask and every method's fill side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diff4mmlits.config import Config
from diff4mmlits.data.case import Case
from diff4mmlits.figures import LIVER_COLOUR, TUMOR_COLOUR, display_case, mark_sides, plt, save_figure
from diff4mmlits.inpaint.case import case_rng, fill_volume, inpaint_mask_of
from diff4mmlits.inpaint.infer import Inpainter


def mask_slice_index(hole: np.ndarray) -> int:
    """The axial slice with the largest part of the mask (the middle one when the mask is empty)."""
    area = hole.sum(axis=(1, 2))
    return int(area.argmax()) if area.max() > 0 else hole.shape[0] // 2


def save_inpaint_figure(case: Case, path: str | Path, config: Config, model: Inpainter | None) -> Path:
    """``inpaint_<case>.png``: rows are phases; columns the original, the mask, then ffc (when a model
    is given), median and mean-fill, all at the slice with most mask, in the preview window."""
    case = display_case(case)
    hole = inpaint_mask_of(case, config.inpaint)
    z = mask_slice_index(hole)
    methods = (["ffc"] if model is not None else []) + ["median", "mean-fill"]
    names = case.phase_names
    low, high = config.preview.window_hu
    columns = ["original", "mask"] + methods
    fig, axes = plt.subplots(len(names), len(columns), figsize=(2.2 * len(columns), 2.3 * len(names)), squeeze=False)
    hole_z = hole[z:z + 1]
    liver_z = case.liver_mask[z:z + 1]
    for row, name in enumerate(names):
        image = np.asarray(case.phases[name].array[z:z + 1], dtype=np.float32)
        panels = {"original": image[0], "mask": image[0]}
        for method in methods:
            filled = fill_volume(image, hole_z, name, method, config, model, liver_z, case_rng(config.seed, case.case_id, name))
            panels[method] = filled[0]
        for col, title in enumerate(columns):
            ax = axes[row, col]
            ax.imshow(panels[title], cmap="gray", vmin=low, vmax=high, interpolation="nearest")
            if title == "mask" and hole_z[0].any():
                ax.contour(hole_z[0], levels=[0.5], colors=TUMOR_COLOUR, linewidths=0.8)
                ax.contour(liver_z[0], levels=[0.5], colors=LIVER_COLOUR, linewidths=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
            mark_sides(ax)
            if row == 0:
                ax.set_title(title, fontsize=10)
            if col == 0:
                ax.set_ylabel(name, fontsize=10)
    fig.suptitle(f"{case.case_id}: inpainting at slice {z} (mask: closed + dilated tumor, red; liver, green)", fontsize=10)
    return save_figure(fig, path)
