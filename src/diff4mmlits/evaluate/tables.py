"""Metric tables: per-case CSV and a summary (mean ± sd, median, how many cases were undefined).

Undefined values (NaN, e.g. HD95 when one mask is empty) are written as empty cells and left out of
the summary statistics; the summary says how many there were.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from diff4mmlits.data.measures import dice_from_counts
from diff4mmlits.files import write_text_atomic

TUMOR_DICE_PER_CASE = "tumor_dice_per_case"
TUMOR_DICE_GLOBAL = "tumor_dice_global"
TUMOR_DICE_PER_LESION = "tumor_dice_per_lesion"
LEGACY_NAMES = {"tumor_dsc": TUMOR_DICE_PER_CASE}
"""Old column names still read (``metrics.csv`` written before the per-case Dice was named so)."""

PAPER_METRICS = (TUMOR_DICE_PER_CASE, "tumor_jaccard", "tumor_sensitivity", "tumor_precision")
"""The paper's table columns (DSC, JAC, SE, PRE of the tumor, each a mean over cases)."""

SUMMARY_METRICS = PAPER_METRICS + (
    "tumor_hd95_mm", "liver_dsc", "liver_jaccard", "liver_sensitivity", "liver_precision", "liver_hd95_mm",
    "lesion_precision", "lesion_recall", "lesion_f1",
)
COUNT_METRICS = ("lesions_true", "lesions_detected", "lesions_missed", "lesions_false_positive")

TUMOR_DICE_LEGEND = (
    f"{TUMOR_DICE_PER_CASE}: tumor Dice per case (each case's Dice, mean over cases: the paper's tables)",
    f"{TUMOR_DICE_GLOBAL}: tumor Dice global (all cases' voxels pooled: 2·ΣTP / (Σ|P|+Σ|T|))",
    f"{TUMOR_DICE_PER_LESION}: tumor Dice per lesion (each true lesion vs the predicted components "
    "touching it, 0 if missed; mean over true lesions)",
    "lesion_*_iou<t>: lesion detection pooled over cases, a lesion found when its IoU with the predicted "
    "components touching it exceeds t/100 (iou0: any overlap)",
)
"""One line per tumor Dice variant and one for detection (summary.txt, the evaluate command, the report)."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _cell(value: Any) -> str:
    if _is_number(value):
        if isinstance(value, (float, np.floating)) and math.isnan(float(value)):
            return ""
        return f"{float(value):.6g}" if isinstance(value, (float, np.floating)) else str(int(value))
    return str(value)


def write_rows_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Rows (dicts with the same keys, first key ``case``) as CSV, atomically."""
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return write_text_atomic(path, buffer.getvalue())


def read_rows_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a metrics CSV with numbers parsed (empty cells → NaN) and old column names
    (:data:`LEGACY_NAMES`) read as today's."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    parsed = []
    for row in rows:
        out: dict[str, Any] = {}
        for key, value in row.items():
            if key == "case":
                out[key] = value
                continue
            try:
                out[key] = float(value) if value != "" else float("nan")
            except ValueError:
                out[key] = value
        parsed.append(current_names(out))
    return parsed


def current_names(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with old column names (:data:`LEGACY_NAMES`) renamed, unless the new one is there too."""
    return {(LEGACY_NAMES[k] if k in LEGACY_NAMES and LEGACY_NAMES[k] not in row else k): v for k, v in row.items()}


def summarize(rows: Sequence[dict[str, Any]], metrics: Sequence[str] = SUMMARY_METRICS) -> list[dict[str, Any]]:
    """One row per metric: mean, sd (sample, ddof=1), median, min, max, n defined, n undefined; then
    the numbers of the whole set (:func:`pooled_metrics`) and the lesion totals."""
    rows = [current_names(r) for r in rows]
    metrics = [LEGACY_NAMES.get(m, m) for m in metrics]
    summary = []
    for metric in metrics:
        values = np.array([float(r[metric]) for r in rows if metric in r and _is_number(r[metric])], dtype=np.float64)
        defined = values[~np.isnan(values)]
        summary.append({
            "metric": metric,
            "mean": float(defined.mean()) if defined.size else float("nan"),
            "sd": float(defined.std(ddof=1)) if defined.size > 1 else (0.0 if defined.size == 1 else float("nan")),
            "median": float(np.median(defined)) if defined.size else float("nan"),
            "min": float(defined.min()) if defined.size else float("nan"),
            "max": float(defined.max()) if defined.size else float("nan"),
            "n": int(defined.size),
            "n_undefined": int(values.size - defined.size),
        })
    pooled = pooled_metrics(rows)
    dice_rows = [r for r in pooled if r["metric"] in (TUMOR_DICE_GLOBAL, TUMOR_DICE_PER_LESION)]
    at = next((i + 1 for i, r in enumerate(summary) if r["metric"] == TUMOR_DICE_PER_CASE), len(summary))
    summary[at:at] = dice_rows  # the three tumor Dice numbers side by side
    summary += [r for r in pooled if r not in dice_rows]
    for metric in COUNT_METRICS:
        values = [float(r[metric]) for r in rows if metric in r and _is_number(r[metric])]
        summary.append({"metric": f"{metric} (total)", "mean": float(np.sum(values)) if values else float("nan"),
                        "sd": float("nan"), "median": float("nan"), "min": float("nan"), "max": float("nan"),
                        "n": len(values), "n_undefined": 0})
    return summary


def _total(rows: Sequence[dict[str, Any]], key: str) -> float | None:
    values = [float(r[key]) for r in rows if key in r and _is_number(r[key]) and not math.isnan(float(r[key]))]
    return float(np.sum(values)) if len(values) == len(rows) and rows else None


def _set_row(metric: str, value: float, n: int) -> dict[str, Any]:
    """A summary row of a number computed over the whole set (no spread)."""
    return {"metric": metric, "mean": value, "sd": float("nan"), "median": float("nan"), "min": float("nan"),
            "max": float("nan"), "n": n, "n_undefined": 0}


def pooled_metrics(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Numbers of the whole set (module doc of :mod:`diff4mmlits.evaluate.metrics`): global and per-lesion
    tumor Dice, and lesion recall / precision / F1 per IoU threshold over all lesions pooled.
    Rows without the columns they need (an older metrics.csv) give none."""
    out: list[dict[str, Any]] = []
    tp, pred, true = (_total(rows, f"tumor_{k}_voxels") for k in ("tp", "pred", "true"))
    if tp is not None and pred is not None and true is not None:
        out.append(_set_row(TUMOR_DICE_GLOBAL, dice_from_counts(tp, pred, true), len(rows)))
    dice_sum, lesions = _total(rows, "lesion_dice_sum"), _total(rows, "lesions_true")
    if dice_sum is not None and lesions:
        out.append(_set_row(TUMOR_DICE_PER_LESION, dice_sum / lesions, int(lesions)))
    predicted = _total(rows, "lesions_pred")
    suffixes = sorted({k.removeprefix("lesions_detected_") for r in rows for k in r if k.startswith("lesions_detected_iou")},
                      key=lambda name: int(name.removeprefix("iou")))
    for suffix in suffixes:
        detected, tp_pred = _total(rows, f"lesions_detected_{suffix}"), _total(rows, f"lesions_tp_pred_{suffix}")
        if detected is None or tp_pred is None or lesions is None or predicted is None:
            continue
        recall = 1.0 if lesions == 0 else detected / lesions
        precision = 1.0 if predicted == 0 else tp_pred / predicted
        f1 = 0.0 if recall + precision == 0 else 2 * recall * precision / (recall + precision)
        out += [_set_row(f"lesion_recall_{suffix}", recall, int(lesions)),
                _set_row(f"lesion_precision_{suffix}", precision, int(predicted)),
                _set_row(f"lesion_f1_{suffix}", f1, int(lesions))]
    return out


def mean_sd_text(summary_row: dict[str, Any], percent: bool = False) -> str:
    """``"78.9 ± 4.2"`` (``percent``: values ×100, as the paper's tables)."""
    scale = 100.0 if percent else 1.0
    mean, sd = summary_row["mean"], summary_row["sd"]
    if math.isnan(mean):
        return "–"
    return f"{scale * mean:.2f} ± {scale * sd:.2f}" if not math.isnan(sd) else f"{scale * mean:.2f}"


def summary_text(summary: Sequence[dict[str, Any]]) -> str:
    """A plain-text summary (one metric a line) for the terminal, after the lines that say which
    tumor Dice is which (when the set's numbers are there)."""
    lines = list(TUMOR_DICE_LEGEND) + [""] if any(r["metric"] == TUMOR_DICE_GLOBAL for r in summary) else []
    for row in summary:
        name = row["metric"]
        if name.endswith("(total)"):
            lines.append(f"{name:<34} {int(row['mean']) if not math.isnan(row['mean']) else '–'}")
            continue
        is_ratio = not name.endswith("_mm")
        value = mean_sd_text(row, percent=is_ratio) + (" %" if is_ratio else " mm")
        undefined = f"  ({row['n_undefined']} undefined)" if row["n_undefined"] else ""
        lines.append(f"{name:<34} {value}{undefined}")
    return "\n".join(lines)
