"""The segmenter's section of ``report/index.html``: its plan and training curves."""

from __future__ import annotations

import html
from pathlib import Path

from diff4mmlits.htmlpage import figure_html
from diff4mmlits.runfolder import RunFolder
from diff4mmlits.segment.plan import PLAN_FILE, read_plan


def section_segmenter(run: RunFolder, report_dir: Path) -> str:
    """The trained segmenter: its plan and training curves."""
    model_dir = run.segmenter_dir
    if not (model_dir / PLAN_FILE).is_file():
        return ""
    plan = read_plan(model_dir / PLAN_FILE)
    parts = ["<h2>Segmenter</h2>", f"<pre>{html.escape(plan.describe())}</pre>"]
    curves = model_dir / "curves.png"
    if curves.is_file():
        parts.append(figure_html(curves, report_dir, "training loss and validation Dice per epoch"))
    return "\n".join(parts)
