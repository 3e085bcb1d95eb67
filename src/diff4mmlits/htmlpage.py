"""Small HTML helpers shared by every stage's report section and the evaluation page.

A section is an HTML fragment; links are relative to the report folder so that the folder can be
copied or zipped as a whole.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #ddd; margin: 4px 0; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figcaption { font-size: 0.8em; color: #555; }
.muted { color: #777; font-size: 0.9em; }
"""


def relative_link(target: Path, report_dir: Path) -> str:
    """A link from the report folder to ``target`` (forward slashes, HTML-escaped)."""
    return html.escape(Path(os.path.relpath(target, report_dir)).as_posix())


def html_table(header: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure_html(path: Path, report_dir: Path, caption: str) -> str:
    return f'<figure><img src="{relative_link(path, report_dir)}" alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>'
