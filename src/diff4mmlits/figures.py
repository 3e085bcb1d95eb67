"""Figures people look at instead of reading numbers: case previews, overlays.

All figures are written with matplotlib's Agg backend (no screen needed), atomically.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from diff4mmlits import LABEL_TUMOR  # noqa: E402
from diff4mmlits.data.case import Case  # noqa: E402
from diff4mmlits.data.volume import Volume  # noqa: E402
from diff4mmlits.files import atomic_path  # noqa: E402

LIVER_COLOUR = "#2ca02c"
TUMOR_COLOUR = "#d62728"


DISPLAY_ORIENTATION = "LPS"
"""Figures slice volumes stored in this orientation: an axial slice then shows the patient's right
on the left and anterior at the top (the radiological convention), whatever the file's storage."""


def display_volume(volume: Volume) -> Volume:
    """``volume`` reoriented for display (:data:`DISPLAY_ORIENTATION`; no resampling)."""
    from diff4mmlits.data.orientation import reorient

    return reorient(volume, DISPLAY_ORIENTATION)


def display_case(case: Case) -> Case:
    """Every volume of ``case`` reoriented for display (see :data:`DISPLAY_ORIENTATION`)."""
    label = display_volume(case.label) if case.label is not None else None
    return Case(case_id=case.case_id, phases={k: display_volume(v) for k, v in case.phases.items()}, label=label,
                annotated_phase=case.annotated_phase, extras={k: display_volume(v) for k, v in case.extras.items()})


def mark_sides(ax: plt.Axes) -> None:
    """'R' and 'L' at the left and right edges of an axial panel (radiological convention)."""
    for x, text, align in ((0.02, "R", "left"), (0.98, "L", "right")):
        ax.text(x, 0.5, text, transform=ax.transAxes, color="#ffd700", fontsize=7, ha=align, va="center",
                fontweight="bold")


def representative_slice(case: Case) -> int:
    """The axial slice with the most tumor (else the most liver, else the middle one)."""
    if case.label is None:
        return case.annotated.shape[0] // 2
    label = case.label.array
    tumor = (label == LABEL_TUMOR).sum(axis=(1, 2))
    if tumor.max() > 0:
        return int(tumor.argmax())
    liver = (label > 0).sum(axis=(1, 2))
    return int(liver.argmax()) if liver.max() > 0 else label.shape[0] // 2


def draw_label_contours(ax: plt.Axes, label_slice: np.ndarray) -> None:
    """Liver (green) and tumor (red) contours of one axial label slice."""
    if (label_slice > 0).any():
        ax.contour(label_slice > 0, levels=[0.5], colors=LIVER_COLOUR, linewidths=0.8)
    if (label_slice == LABEL_TUMOR).any():
        ax.contour(label_slice == LABEL_TUMOR, levels=[0.5], colors=TUMOR_COLOUR, linewidths=0.8)


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 110) -> Path:
    """Save and close a figure, atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def plot_case_preview(case: Case, path: str | Path, window_hu: tuple[float, float] = (-160.0, 240.0)) -> Path:
    """Every phase side by side at one axial slice, with the annotated label's contour.

    The contour is the annotated phase's label drawn on every phase: where a phase is not
    registered, the mismatch is visible (that is the point of the register stage).
    """
    case = display_case(case)
    index = representative_slice(case)
    names = case.phase_names
    fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names), 2.9), squeeze=False)
    label_slice = case.label.array[index] if case.label is not None else None
    for ax, name in zip(axes[0], names):
        volume = case.phases[name]
        z = min(index, volume.shape[0] - 1)
        ax.imshow(volume.array[z], cmap="gray", vmin=window_hu[0], vmax=window_hu[1], interpolation="nearest")
        if label_slice is not None and volume.shape[1:] == label_slice.shape:
            draw_label_contours(ax, label_slice)
        ax.set_title(name, fontsize=10)
        ax.axis("off")
        mark_sides(ax)
    fig.suptitle(f"{case.case_id} — slice {index} (label drawn on {case.annotated_phase})", fontsize=10)
    return save_figure(fig, path)
