"""``report/index.html``: one page that shows what a run holds.

The page is a loop over the stages' report sections (each stage declares its own, see
:mod:`diff4mmlits.stage`), in the paper's order; a section is left out when its stage has nothing
in the run folder yet. Links point only to files that exist; images are linked relative to the
report, so the folder can be copied or zipped as a whole.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from diff4mmlits.config import Config
from diff4mmlits.files import write_text_atomic
from diff4mmlits.htmlpage import STYLE
from diff4mmlits.runfolder import RunFolder
from diff4mmlits.stage import Stage


def write_report(run: RunFolder, config: Config, stages: Sequence[Stage]) -> Path:
    """Write ``RUN/report/index.html`` from the report sections of ``stages``; return its path."""
    report_dir = run.report_dir
    report_dir.mkdir(parents=True, exist_ok=True)
    sections = [stage.report(run, report_dir) for stage in stages if stage.report is not None]
    body = "\n".join(s for s in sections if s)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>diff4mmlits — "
        f"{html.escape(run.root.name)}</title><style>{STYLE}</style></head><body>"
        f"<h1>diff4mmlits run: {html.escape(run.root.name)}</h1>"
        f"<p class='muted'>preset {html.escape(config.preset)}, seed {config.seed}</p>{body}</body></html>\n"
    )
    return write_text_atomic(report_dir / "index.html", page)
