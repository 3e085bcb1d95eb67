"""``report/index.html``: one page that shows what a run holds.

The page is a loop over the stages' report sections (each stage declares its own, see
:mod:`diff4mmlits.stage`); a section is left out when its stage has nothing in the run folder yet.
The headline results (the held-out test cases' segmentation) come first, then the stages in the
paper's order, then the settings. The page opens with the version, the date and a table of
contents. Every image lies inside ``report/`` and is linked relatively, and no absolute path is
printed, so the folder can be moved, copied or zipped as a whole.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Sequence
from pathlib import Path

from diff4mmlits.config import Config
from diff4mmlits.files import write_text_atomic
from diff4mmlits.htmlpage import STYLE, html_table
from diff4mmlits.runfolder import RunFolder
from diff4mmlits.stage import Stage

HEADLINE_STAGES = ("evaluate",)
"""Stages whose sections open the page (the results a reader looks for first)."""
_HEADING = re.compile(r"<h2([^>]*)>(.*?)</h2>", re.S)


def _with_anchor(section: str, anchor: str) -> tuple[str, str]:
    """The section with ``id=anchor`` on its first ``<h2>``, and that heading's text."""
    match = _HEADING.search(section)
    if match is None:
        return section, anchor
    title = re.sub(r"<[^>]+>", "", match.group(2))
    tagged = section[: match.start()] + f"<h2 id='{anchor}'{match.group(1)}>{match.group(2)}</h2>" + section[match.end():]
    return tagged, html.unescape(title)


def settings_section(config: Config) -> str:
    """The settings people change most, one row per section, and the whole configuration folded."""
    from diff4mmlits.config import config_to_yaml

    rows = []
    for name in type(config).model_fields:
        value = getattr(config, name)
        if hasattr(value, "model_dump"):
            shown = ", ".join(f"{k}={v}" for k, v in list(value.model_dump(mode="json").items())[:6])
            rows.append([name, shown])
        else:
            rows.append([name, value])
    full = html.escape(config_to_yaml(config))
    return ("<h2>Settings</h2><p class='muted'>The first settings of each section; the full configuration "
            "(as in config.yaml) below.</p>" + html_table(["section", "settings"], rows)
            + f"<details><summary>config.yaml</summary><pre>{full}</pre></details>")


def write_report(run: RunFolder, config: Config, stages: Sequence[Stage]) -> Path:
    """Write ``RUN/report/index.html`` from the report sections of ``stages``; return its path."""
    from diff4mmlits import __version__

    report_dir = run.report_dir
    report_dir.mkdir(parents=True, exist_ok=True)
    ordered = sorted((s for s in stages if s.report is not None), key=lambda s: s.name not in HEADLINE_STAGES)
    sections = [html_section for stage in ordered if (html_section := stage.report(run, report_dir))]
    sections.append(settings_section(config))
    tagged, contents = [], []
    for index, section in enumerate(sections):
        section, title = _with_anchor(section, f"s{index}")
        tagged.append(section)
        contents.append(f"<li><a href='#s{index}'>{html.escape(title)}</a></li>")
    written = time.strftime("%Y-%m-%d %H:%M")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>diff4mmlits — "
        f"{html.escape(run.root.name)}</title><style>{STYLE}</style></head><body>"
        f"<h1>diff4mmlits run: {html.escape(run.root.name)}</h1>"
        f"<p class='muted'>diff4mmlits {html.escape(__version__)}, written {written}; preset "
        f"{html.escape(config.preset)}, seed {config.seed}, device {html.escape(config.device)}</p>"
        f"<nav><ol>{''.join(contents)}</ol></nav>{''.join(tagged)}</body></html>\n"
    )
    return write_text_atomic(report_dir / "index.html", page)
