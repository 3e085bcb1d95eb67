"""Figures of an evaluation: metric box plots and overlays of predictions on the CT."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from diff4mmlits import LABEL_TUMOR
from diff4mmlits.figures import draw_label_contours, mark_sides, save_figure


def plot_metric_boxplots(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Box plots (with the cases as dots) of the paper's tumor metrics, liver DSC and both HD95s."""
    ratio_metrics = [("tumor_dice_per_case", "tumor DSC"), ("tumor_jaccard", "tumor JAC"), ("tumor_sensitivity", "tumor SE"),
                     ("tumor_precision", "tumor PRE"), ("liver_dsc", "liver DSC"), ("lesion_f1", "lesion F1")]
    mm_metrics = [("tumor_hd95_mm", "tumor HD95"), ("liver_hd95_mm", "liver HD95")]
    fig, (ax_ratio, ax_mm) = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [3, 1]})
    for ax, metrics, unit in ((ax_ratio, ratio_metrics, "score"), (ax_mm, mm_metrics, "mm")):
        data = []
        for key, _ in metrics:
            values = np.array([float(r.get(key, np.nan)) for r in rows], dtype=float)
            data.append(values[~np.isnan(values)])
        positions = np.arange(1, len(metrics) + 1)
        ax.boxplot([d if d.size else [np.nan] for d in data], positions=positions, widths=0.5, showfliers=False)
        rng = np.random.default_rng(0)  # jitter of the dots only
        for pos, values in zip(positions, data):
            ax.scatter(pos + rng.uniform(-0.12, 0.12, values.size), values, s=10, alpha=0.7, color="#1f77b4")
        ax.set_xticks(positions, [name for _, name in metrics], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(unit)
        if unit == "score":
            ax.set_ylim(-0.02, 1.02)
    fig.suptitle(f"per-case metrics ({len(rows)} cases)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def overlay_slice(truth: np.ndarray, pred: np.ndarray) -> int:
    """The axial slice with the most true tumor, else predicted tumor, else liver, else the middle."""
    for mask in (truth == LABEL_TUMOR, pred == LABEL_TUMOR, truth > 0, pred > 0):
        counts = mask.sum(axis=(1, 2))
        if counts.max() > 0:
            return int(counts.argmax())
    return truth.shape[0] // 2


def plot_overlay(
    image_hu: np.ndarray | None, truth: np.ndarray, pred: np.ndarray, path: str | Path, title: str,
    window_hu: tuple[float, float] = (-160.0, 240.0),
) -> Path:
    """Truth and prediction contours (liver green, tumor red) over the CT at one axial slice."""
    z = overlay_slice(truth, pred)
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.4))
    for ax, label, name in ((axes[0], truth, "truth"), (axes[1], pred, "prediction")):
        if image_hu is not None:
            ax.imshow(image_hu[z], cmap="gray", vmin=window_hu[0], vmax=window_hu[1], interpolation="nearest")
        else:
            ax.imshow(np.zeros(truth.shape[1:]), cmap="gray", vmin=0, vmax=1)
        draw_label_contours(ax, label[z])
        ax.set_title(name, fontsize=9)
        ax.axis("off")
        mark_sides(ax)
    fig.suptitle(f"{title} — slice {z}", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
