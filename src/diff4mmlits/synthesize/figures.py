"""``report/figures/synthesis_<case>.png``: synthetic tumors beside real tumors of about the same size.

Top row: the four phases of a synthetic case around its largest tumor, with the tumor contour
(one mask for every phase: strictly aligned). Bottom row: the real tumor (registered training
cases) whose volume is closest, with its annotated (PVP) contour — which the other phases of a
real case need not follow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diff4mmlits import LABEL_TUMOR, PHASES
from diff4mmlits.data.case import Case
from diff4mmlits.data.measures import equivalent_radius_mm
from diff4mmlits.synthesize.contrast import TumorContrast, measure_tumor_contrasts

WINDOW_HU = (-100.0, 250.0)
"""Display window (liver tumors)."""


def _panel_box(centre: np.ndarray, voxels: int, shape: tuple[int, ...]) -> tuple[int, slice, slice]:
    """Axial slice index and an in-plane window about 3 tumor diameters wide (at least 24 voxels)."""
    radius = equivalent_radius_mm(voxels, (1.0, 1.0, 1.0))  # in voxels
    half = int(max(12, 3 * radius))
    z, y, x = (int(round(c)) for c in centre)
    ys = slice(max(y - half, 0), min(y + half, shape[1]))
    xs = slice(max(x - half, 0), min(x + half, shape[2]))
    return min(max(z, 0), shape[0] - 1), ys, xs


def _draw_row(axes: np.ndarray, case: Case, tumor: TumorContrast, title: str) -> None:
    z, ys, xs = _panel_box(np.array(tumor.centre_vox), tumor.voxels, case.annotated.shape)
    label = case.label.array[z, ys, xs] == LABEL_TUMOR
    for ax, phase in zip(axes, PHASES):
        ax.axis("off")
        if phase not in case.phases:
            ax.set_title(f"{phase} (missing)", fontsize=8)
            continue
        ax.imshow(case.phases[phase].array[z, ys, xs], cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], interpolation="nearest")
        if label.any():
            ax.contour(label, levels=[0.5], colors="#d62728", linewidths=0.8)
        contrast = tumor.contrast_hu.get(phase)
        ax.set_title(f"{phase}: {contrast:+.0f} HU" if contrast is not None else phase, fontsize=8)
    axes[0].text(-0.08, 0.5, title, transform=axes[0].transAxes, rotation=90, va="center", ha="right", fontsize=8)


def plot_synthesis_examples(synthetic: list[Case], real: list[Case], out_dir: str | Path) -> list[Path]:
    """One figure per synthetic case; returns the paths written (none when nothing has a tumor)."""
    import matplotlib.pyplot as plt

    from diff4mmlits.figures import display_case, save_figure

    real = [display_case(case) for case in real]
    real_tumors = [(case, tumor) for case in real for tumor in measure_tumor_contrasts(case)]
    paths = []
    for case in (display_case(c) for c in synthetic):
        tumors = measure_tumor_contrasts(case)
        if not tumors:
            continue
        tumor = max(tumors, key=lambda t: t.voxels)
        fig, axes = plt.subplots(2 if real_tumors else 1, len(PHASES), figsize=(2.2 * len(PHASES), 4.6 if real_tumors else 2.4), squeeze=False)
        _draw_row(axes[0], case, tumor, f"synthetic {case.case_id}\n{tumor.volume_ml:.2f} mL")
        if real_tumors:
            match_case, match = min(real_tumors, key=lambda pair: abs(np.log(pair[1].voxels / tumor.voxels)))
            _draw_row(axes[1], match_case, match, f"real {match_case.case_id}\n{match.volume_ml:.2f} mL")
        fig.suptitle("synthetic tumor (top) and the real tumor closest in size (bottom); tumor − liver contrast per phase", fontsize=9)
        paths.append(save_figure(fig, Path(out_dir) / f"synthesis_{case.case_id}.png"))
    return paths
