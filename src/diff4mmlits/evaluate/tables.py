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

from diff4mmlits.files import write_text_atomic

PAPER_METRICS = ("tumor_dsc", "tumor_jaccard", "tumor_sensitivity", "tumor_precision")
"""The paper's table columns (DSC, JAC, SE, PRE of the tumor)."""

SUMMARY_METRICS = PAPER_METRICS + (
    "tumor_hd95_mm", "liver_dsc", "liver_jaccard", "liver_sensitivity", "liver_precision", "liver_hd95_mm",
    "lesion_precision", "lesion_recall", "lesion_f1",
)
COUNT_METRICS = ("lesions_true", "lesions_detected", "lesions_missed", "lesions_false_positive")


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
    """Rows of a metrics CSV with numbers parsed (empty cells → NaN)."""
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
        parsed.append(out)
    return parsed


def summarize(rows: Sequence[dict[str, Any]], metrics: Sequence[str] = SUMMARY_METRICS) -> list[dict[str, Any]]:
    """One row per metric: mean, sd (sample, ddof=1), median, min, max, n defined, n undefined."""
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
    for metric in COUNT_METRICS:
        values = [float(r[metric]) for r in rows if metric in r and _is_number(r[metric])]
        summary.append({"metric": f"{metric} (total)", "mean": float(np.sum(values)) if values else float("nan"),
                        "sd": float("nan"), "median": float("nan"), "min": float("nan"), "max": float("nan"),
                        "n": len(values), "n_undefined": 0})
    return summary


def mean_sd_text(summary_row: dict[str, Any], percent: bool = False) -> str:
    """``"78.9 ± 4.2"`` (``percent``: values ×100, as the paper's tables)."""
    scale = 100.0 if percent else 1.0
    mean, sd = summary_row["mean"], summary_row["sd"]
    if math.isnan(mean):
        return "–"
    return f"{scale * mean:.2f} ± {scale * sd:.2f}" if not math.isnan(sd) else f"{scale * mean:.2f}"


def summary_text(summary: Sequence[dict[str, Any]]) -> str:
    """A plain-text summary (one metric a line) for the terminal."""
    lines = []
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
