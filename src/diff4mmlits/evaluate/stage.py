"""Run-folder side of evaluation: the ``evaluate`` stage and the report's segmentation sections.

``evaluate``: ``RUN/predictions/`` against the labels of the run's test cases →
``RUN/report/metrics.csv``, ``summary.csv``, ``summary.txt`` and ``RUN/report/figures/``.
The run report (``RUN/report/index.html``) shows them through :func:`section_segmentation_metrics`,
and the trained segmenter (plan, curves, training log) through :func:`section_segmenter`.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

from diff4mmlits.config import Config
from diff4mmlits.errors import InputError
from diff4mmlits.runfolder import RunFolder

log = logging.getLogger(__name__)


def stage_evaluate(run: RunFolder, config: Config) -> None:
    """Pipeline stage ``evaluate``: test-split predictions vs their labels → ``RUN/report/``."""
    from diff4mmlits.evaluate.evaluation import Truth, evaluate_predictions
    from diff4mmlits.evaluate.tables import summary_text
    from diff4mmlits.pipeline import load_split_cases

    if not run.split("test"):
        log.info("evaluate: no test cases in this run; nothing to evaluate")
        return
    if not run.predictions_dir.is_dir():
        raise InputError("no predictions; run the predict stage first", run.predictions_dir)
    truths = [Truth(c.case_id, c.label, c.annotated) for c in load_split_cases(run, "test") if c.label is not None]
    evaluation = evaluate_predictions(run.predictions_dir, truths, run.report_dir, config.evaluate, write_html=False)
    log.info("evaluate: %d case(s); metrics in %s\n%s", len(evaluation.rows), run.report_dir / "metrics.csv",
             summary_text(evaluation.summary))


def section_segmenter(run: RunFolder, report_dir: Path) -> str:
    """The trained segmenter: its plan, training curves and last log rows."""
    from diff4mmlits.htmlpage import figure_html
    from diff4mmlits.segment.plan import PLAN_FILE, read_plan
    from diff4mmlits.segment.stage import SEGMENTER_MODEL

    model_dir = run.model_dir(SEGMENTER_MODEL)
    if not (model_dir / PLAN_FILE).is_file():
        return ""
    plan = read_plan(model_dir / PLAN_FILE)
    parts = ["<h2>Segmenter</h2>", f"<pre>{html.escape(plan.describe())}</pre>"]
    curves = model_dir / "curves.png"
    if curves.is_file():
        parts.append(figure_html(curves, report_dir, "training loss and validation Dice per epoch"))
    return "\n".join(parts)


def section_segmentation_metrics(run: RunFolder, report_dir: Path) -> str:
    """The evaluate stage's tables and figures (from ``RUN/report/metrics.csv``)."""
    from diff4mmlits.evaluate.evaluation import load_evaluation, metrics_html

    evaluation = load_evaluation(run.report_dir)
    if evaluation is None:
        return ""
    return "<h2>Segmentation of the held-out test cases</h2>" + metrics_html(evaluation, report_dir)
