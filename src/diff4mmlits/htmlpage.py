"""Small HTML helpers shared by every stage's report section and the evaluation page.

A section is an HTML fragment. Every image a page shows lies inside its folder (one outside, e.g.
``RUN/registered/<case>/qc.png``, is copied into ``figures/``) and is linked relatively, so the
folder can be moved, copied or zipped as a whole.
"""

from __future__ import annotations

import html
import os
import shutil
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


def inside(path: Path, report_dir: Path) -> Path:
    """``path`` itself when it lies inside ``report_dir``, else its copy in ``report_dir/figures/``
    (named after its path from the report's parent folder, e.g. ``registered_case_000_qc.png``)."""
    path, report_dir = Path(path), Path(report_dir)
    if report_dir.resolve() in path.resolve().parents:
        return path
    name = Path(os.path.relpath(path, report_dir.parent)).as_posix().replace("../", "").replace("/", "_")
    copy = report_dir / "figures" / name
    if not copy.is_file() or copy.stat().st_mtime < path.stat().st_mtime or copy.stat().st_size != path.stat().st_size:
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, copy)
    return copy


def figure_html(path: Path, report_dir: Path, caption: str) -> str:
    link = relative_link(inside(path, report_dir), report_dir)
    return f'<figure><img src="{link}" alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>'
