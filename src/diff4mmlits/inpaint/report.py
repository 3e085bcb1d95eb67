"""The inpainting section of ``report/index.html``: original, mask and each method side by side."""

from __future__ import annotations

from pathlib import Path

from diff4mmlits.htmlpage import figure_html
from diff4mmlits.runfolder import RunFolder


def section_inpaint(run: RunFolder, report_dir: Path) -> str:
    """The Normal CT Generator: original, mask and each inpainting method side by side; training curves."""
    figures = sorted(run.figures_dir.glob("inpaint_*.png"))
    if not figures:
        return ""
    body = "".join(figure_html(path, report_dir, path.stem.removeprefix("inpaint_")) for path in figures)
    curves = run.inpainter_dir / "curves.png"
    if curves.is_file():
        body += figure_html(curves, report_dir, "inpainter training curves")
    return ("<h2>Inpainting (normal CT)</h2><p class='muted'>Per phase: the registered image, the closed and dilated "
            "tumor mask (red) over the liver (green), and the mask filled by each method.</p>" + body)
