"""Run-folder side of evaluation: the ``evaluate`` stage and its section of the run report.

``evaluate``: ``RUN/predictions/`` against the labels of the run's test cases →
``RUN/report/metrics.csv``, ``summary.csv``, ``summary.txt`` and ``RUN/report/figures/``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from diff4mmlits.config import Config
from diff4mmlits.errors import InputError
from diff4mmlits.evaluate.evaluation import Truth, evaluate_predictions, load_evaluation, metrics_html
from diff4mmlits.evaluate.tables import summary_text
from diff4mmlits.runfolder import RunFolder
from diff4mmlits.stage import Stage

log = logging.getLogger(__name__)


def stage_evaluate(run: RunFolder, config: Config) -> None:
    """Stage ``evaluate``: test-split predictions vs their labels → ``RUN/report/``."""
    if not run.split("test"):
        log.info("evaluate: no test cases in this run; nothing to evaluate")
        return
    if not run.predictions_dir.is_dir():
        raise InputError("no predictions; run the predict stage first", run.predictions_dir)
    truths = [Truth(c.case_id, c.label, c.annotated) for c in run.read_input_cases("test") if c.label is not None]
    evaluation = evaluate_predictions(run.predictions_dir, truths, run.report_dir, config.evaluate, write_html=False)
    log.info("evaluate: %d case(s); metrics in %s\n%s", len(evaluation.rows), run.report_dir / "metrics.csv",
             summary_text(evaluation.summary))


def section_segmentation_metrics(run: RunFolder, report_dir: Path) -> str:
    """The evaluate stage's tables and figures (from ``RUN/report/metrics.csv``)."""
    evaluation = load_evaluation(run.report_dir)
    if evaluation is None:
        return ""
    return "<h2>Segmentation of the held-out test cases</h2>" + metrics_html(evaluation, report_dir)


STAGES: list[Stage] = [
    Stage("evaluate", "metrics of the test predictions (report/metrics.csv)", stage_evaluate, ("evaluate",), ("predict",),
          report=section_segmentation_metrics),
]
