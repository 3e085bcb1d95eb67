"""``diff4mmlits evaluate PRED GT --out DIR``: metrics per case, summary, figures and ``DIR/index.html``.

PRED is a folder of ``<case>.nii.gz`` label files (what ``predict`` writes). GT is either a dataset
(any layout ``data/`` reads; its labels are the truth and its annotated phase is drawn under the
overlays) or a plain folder of ``<case>.nii.gz`` label files. Cases are matched by name; a
prediction must lie on its truth's grid exactly (no silent resampling).

Outputs in DIR: ``metrics.csv`` (one row per case), ``summary.csv`` and ``summary.txt`` (mean ± sd
per metric, and the numbers of the whole set), ``figures/boxplots.png``,
``figures/overlay_<rank>_<case>.png`` for the best, median and worst cases by per-case tumor Dice,
and ``index.html`` with all of it. The tumor Dice is reported three ways, each under its own name
(``tumor_dice_per_case``, ``tumor_dice_global``, ``tumor_dice_per_lesion``; see
:mod:`diff4mmlits.evaluate.metrics`), with lesion detection at IoU thresholds.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diff4mmlits import LABEL_LIVER, LABEL_TUMOR
from diff4mmlits.data.io import read_volume, strip_extension, volume_extension
from diff4mmlits.data.volume import Volume, require_same_grid
from diff4mmlits.errors import InputError
from diff4mmlits.evaluate.config import EvaluateConfig
from diff4mmlits.files import staged_files, write_text_atomic
from diff4mmlits.progress import progress

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.csv"
SUMMARY_TEXT_FILE = "summary.txt"
BOXPLOT_FILE = "boxplots.png"


@dataclass(frozen=True)
class Truth:
    """The truth of one case: label, and the annotated phase's image when known (for overlays)."""

    case_id: str
    label: Volume
    image: Volume | None = None
    source: Path | None = None
    """The file the label was read from (named in error messages)."""


@dataclass
class Evaluation:
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    out_dir: Path
    figures: dict[str, Path]
    missing_predictions: list[str]


def label_files(folder: Path) -> dict[str, Path]:
    """``case id → file`` for the image files directly inside ``folder``."""
    return {strip_extension(p): p for p in sorted(folder.iterdir()) if p.is_file() and volume_extension(p)}


def read_truth(gt: str | Path) -> list[Truth]:
    """Truth from a dataset of any layout, or from a folder of label files."""
    gt = Path(gt)
    if not gt.exists():
        raise InputError("ground-truth folder not found; give a dataset or a folder of label files", gt)
    if not gt.is_dir():
        raise InputError("GT must be a folder (a dataset, or label files named <case>.nii.gz)", gt)
    files = label_files(gt)
    if files:
        return [Truth(case_id, read_volume(path, kind="label"), source=path) for case_id, path in files.items()]
    from diff4mmlits.data.dataset import load_dataset

    cases = load_dataset(gt, require_label=True)
    return [Truth(c.case_id, c.label, c.annotated) for c in cases if c.label is not None]


def _require_liver_tumor_values(label: Volume, what: str, where: str | Path) -> None:
    """Refuse a label file with values other than 0, 1, 2 (a multi-organ map would be scored as if its
    organ 2 were tumor and every organ liver)."""
    values = np.unique(label.array)
    other = [str(v) for v in values if v not in (0, LABEL_LIVER, LABEL_TUMOR)]
    if other:
        shown = ", ".join(other[:8]) + (f" and {len(other) - 8} more" if len(other) > 8 else "")
        raise InputError(f"holds label value(s) {shown}; {what} is 0 background, 1 liver, 2 tumor (remap other label "
                         "files before scoring, e.g. TotalSegmentator's liver 5 to 1)", where)


def evaluate_predictions(
    pred_dir: str | Path, truths: list[Truth], out_dir: str | Path, config: EvaluateConfig, write_html: bool = True,
    title: str = "Segmentation evaluation",
) -> Evaluation:
    """Score every prediction that has a truth; write tables, figures and (optionally) ``index.html``."""
    from diff4mmlits.evaluate.metric_figures import plot_metric_boxplots, plot_overlay
    from diff4mmlits.evaluate.metrics import case_metrics
    from diff4mmlits.evaluate.tables import TUMOR_DICE_PER_CASE, summarize, summary_text, write_rows_csv
    from diff4mmlits.figures import display_volume

    pred_dir, out_dir = Path(pred_dir), Path(out_dir)
    if not pred_dir.is_dir():
        raise InputError("is a file; give the folder of predictions (one <case>.nii.gz each)" if pred_dir.exists()
                         else "prediction folder not found; run 'diff4mmlits predict' first", pred_dir)
    predictions = label_files(pred_dir)
    if not predictions:
        raise InputError("no prediction files (<case>.nii.gz) here; run 'diff4mmlits predict' first", pred_dir)
    by_id = {t.case_id: t for t in truths}
    matched = [case_id for case_id in predictions if case_id in by_id]
    unknown = [case_id for case_id in predictions if case_id not in by_id]
    if not matched:
        raise InputError(f"no prediction matches a ground-truth case by name (predictions: {', '.join(list(predictions)[:5])}…)", pred_dir)
    if unknown:
        log.warning("evaluate: %d prediction(s) without ground truth skipped: %s", len(unknown), ", ".join(unknown[:10]))
    missing = sorted(set(by_id) - set(predictions))

    rows: list[dict[str, Any]] = []
    labels: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for case_id in progress(matched, desc="evaluate", unit="case"):
        truth = by_id[case_id]
        pred = read_volume(predictions[case_id], kind="label")
        require_same_grid(truth.label, pred, what=f"{predictions[case_id]} vs the ground truth of {case_id}",
                          hint="predictions must be on the annotated phase's grid ('diff4mmlits predict' writes them so)")
        _require_liver_tumor_values(pred, "a prediction", predictions[case_id])
        _require_liver_tumor_values(truth.label, "the ground truth", truth.source or case_id)
        pred_array = pred.array.astype(np.uint8)
        truth_array = truth.label.array.astype(np.uint8)
        row = {"case": case_id, **case_metrics(
            pred_array, truth_array, truth.label.spacing_mm, config.lesion_min_overlap_voxels,
            config.lesion_size_classes_mm, config.hd_percentile, tuple(config.lesion_iou_thresholds),
        )}
        rows.append(row)
        labels[case_id] = (truth_array, pred_array)

    summary = summarize(rows)
    # The whole set or nothing: out_dir is often the run's shared report/ folder (a full disk
    # after metrics.csv used to leave new tables beside an earlier evaluation's figures).
    with staged_files(out_dir, last=METRICS_FILE, replaces=("figures/overlay_*.png",)) as stage:
        write_rows_csv(rows, stage / METRICS_FILE)
        write_rows_csv([{"case": r["metric"], **{k: v for k, v in r.items() if k != "metric"}} for r in summary], stage / SUMMARY_FILE)
        write_text_atomic(stage / SUMMARY_TEXT_FILE, summary_text(summary) + "\n" + missing_note(missing))
        figures_dir = stage / "figures"
        figures: dict[str, Path] = {"boxplots": plot_metric_boxplots(rows, figures_dir / BOXPLOT_FILE)}
        for rank, case_id in pick_best_median_worst(rows, config.overlay_cases):
            truth_array, pred_array = labels[case_id]
            image = by_id[case_id].image
            grid = by_id[case_id].label  # the radiological axial view, whatever the storage orientation
            truth_array, pred_array = (display_volume(grid.with_array(a, kind="label")).array for a in (truth_array, pred_array))
            image = display_volume(image) if image is not None and image.same_grid(grid) else None
            dsc = next(r[TUMOR_DICE_PER_CASE] for r in rows if r["case"] == case_id)
            figures[f"{rank}: {case_id}"] = plot_overlay(
                image.array if image is not None else None, truth_array, pred_array,
                figures_dir / f"overlay_{rank}_{case_id}.png", f"{rank} — {case_id}, tumor Dice {dsc:.3f}", config.window_hu,
            )
        if write_html:
            write_text_atomic(stage / "index.html", evaluation_page(Evaluation(rows, summary, stage, figures, missing), title))
    figures = {name: out_dir / path.relative_to(stage) for name, path in figures.items()}
    evaluation = Evaluation(rows, summary, out_dir, figures, missing)
    return evaluation


def missing_note(missing: list[str], shown: int = 10) -> str:
    """The line that says which ground-truth cases had no prediction (the means leave them out), or ''."""
    if not missing:
        return ""
    more = f" and {len(missing) - shown} more" if len(missing) > shown else ""
    return (f"not scored: {len(missing)} ground-truth case(s) have no prediction ({', '.join(missing[:shown])}{more}); "
            "the means above leave them out\n")


def load_evaluation(out_dir: str | Path) -> Evaluation | None:
    """An evaluation written earlier to ``out_dir`` (for the run report), or None when there is none."""
    from diff4mmlits.evaluate.tables import read_rows_csv, summarize

    out_dir = Path(out_dir)
    if not (out_dir / METRICS_FILE).is_file():
        return None
    rows = read_rows_csv(out_dir / METRICS_FILE)
    figures_dir = out_dir / "figures"
    figures: dict[str, Path] = {}
    if (figures_dir / BOXPLOT_FILE).is_file():
        figures["boxplots"] = figures_dir / BOXPLOT_FILE
    for path in sorted(figures_dir.glob("overlay_*.png")):
        rank, _, case_id = path.stem.removeprefix("overlay_").partition("_")
        figures[f"{rank}: {case_id}"] = path
    return Evaluation(rows, summarize(rows), out_dir, figures, [])


def pick_best_median_worst(rows: list[dict[str, Any]], count: int) -> list[tuple[str, str]]:
    """``(rank, case)`` for the best, median and worst case by tumor Dice (up to ``count``, no repeats)."""
    from diff4mmlits.evaluate.tables import TUMOR_DICE_PER_CASE, current_names

    if count <= 0 or not rows:
        return []
    ordered = sorted(rows, key=lambda r: (-float(current_names(r)[TUMOR_DICE_PER_CASE]), r["case"]))
    picks = [("best", ordered[0]["case"]), ("median", ordered[len(ordered) // 2]["case"]), ("worst", ordered[-1]["case"])]
    chosen, seen = [], set()
    for rank, case_id in picks:
        if case_id not in seen:
            chosen.append((rank, case_id))
            seen.add(case_id)
    return chosen[:count]


# --- HTML --------------------------------------------------------------------------------------
def metrics_html(evaluation: Evaluation, report_dir: Path) -> str:
    """Tables and figures of an evaluation as an HTML fragment (links only to files that exist)."""
    from diff4mmlits.evaluate.tables import (
        PAPER_METRICS,
        TUMOR_DICE_GLOBAL,
        TUMOR_DICE_LEGEND,
        TUMOR_DICE_PER_CASE,
        TUMOR_DICE_PER_LESION,
        mean_sd_text,
    )
    from diff4mmlits.htmlpage import figure_html, html_table, inside, relative_link

    by_metric = {r["metric"]: r for r in evaluation.summary}
    paper = html_table(
        ["cases", "DSC per case (%)", "JAC (%)", "SE (%)", "PRE (%)"],
        [[str(len(evaluation.rows))] + [mean_sd_text(by_metric[m], percent=True) for m in PAPER_METRICS]],
    )
    three = [("per case (mean of each case's Dice)", TUMOR_DICE_PER_CASE),
             ("global (all voxels pooled)", TUMOR_DICE_GLOBAL),
             ("per lesion (mean over true lesions)", TUMOR_DICE_PER_LESION)]
    dice_table = html_table(["tumor Dice", "column", "%", "over"],
                            [[label, key, mean_sd_text(by_metric[key], percent=True), f"{by_metric[key]['n']} "
                              + ("lesions" if key == TUMOR_DICE_PER_LESION else "cases")]
                             for label, key in three if key in by_metric])
    suffixes = [r["metric"].removeprefix("lesion_recall_") for r in evaluation.summary
                if r["metric"].startswith("lesion_recall_iou")]
    detection_table = html_table(
        ["IoU above", "recall (%)", "precision (%)", "F1 (%)"],
        [[f"{int(s.removeprefix('iou')) / 100:g}"] + [mean_sd_text(by_metric[f"lesion_{k}_{s}"], percent=True)
                                                       for k in ("recall", "precision", "f1")] for s in suffixes],
    )
    full = html_table(
        ["metric", "mean ± sd", "median", "min", "max", "n", "undefined"],
        [[r["metric"], mean_sd_text(r), _num(r["median"]), _num(r["min"]), _num(r["max"]), r["n"], r["n_undefined"]]
         for r in evaluation.summary],
    )
    per_case_keys = [TUMOR_DICE_PER_CASE, "tumor_jaccard", "tumor_sensitivity", "tumor_precision", "tumor_hd95_mm",
                     "liver_dsc", "liver_hd95_mm", "lesions_true", "lesions_detected", "lesions_false_positive", "lesion_f1"]
    per_case = html_table(["case"] + per_case_keys, [[r["case"]] + [_num(r.get(k, float("nan"))) for k in per_case_keys]
                                                     for r in evaluation.rows])
    legend = "<br>".join(html.escape(line) for line in TUMOR_DICE_LEGEND)
    parts = ["<h3>The paper's metrics (tumor, per case: mean ± sd over cases)</h3>", paper,
             f"<h3>Tumor Dice, three ways</h3><p class='muted'>{legend}</p>", dice_table]
    if suffixes:
        parts += ["<h3>Lesion detection at IoU thresholds (all lesions of the set pooled)</h3>", detection_table]
    links = [f'<a href="{relative_link(inside(evaluation.out_dir / name, report_dir), report_dir)}">{name}</a>'
             for name in (METRICS_FILE, SUMMARY_FILE) if (evaluation.out_dir / name).is_file()]
    if links:
        parts.append(f"<p class='muted'>tables: {', '.join(links)}</p>")
    figures = [figure_html(path, report_dir, caption) for caption, path in evaluation.figures.items() if path.is_file()]
    if figures:
        parts.append("<h3>Figures</h3><p class='muted'>Overlays: liver green, tumor red; truth left, prediction right.</p>" + "".join(figures))
    parts += ["<h3>All metrics</h3>", full, "<h3>Per case</h3>", per_case]
    if evaluation.missing_predictions:
        parts.append(f"<p class='muted'>no prediction for {len(evaluation.missing_predictions)} ground-truth case(s): "
                     f"{html.escape(', '.join(evaluation.missing_predictions[:20]))}</p>")
    return "\n".join(parts)


def evaluation_page(evaluation: Evaluation, title: str) -> str:
    from diff4mmlits.htmlpage import STYLE

    body = metrics_html(evaluation, evaluation.out_dir)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>\n")


def _num(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if np.isnan(number):
        return "–"
    return str(int(number)) if number.is_integer() else f"{number:.3f}"
