"""``report/index.html``: one page that shows what a run holds.

The page is assembled from what exists in the run folder: the manifest's case table, the preview
figures, and a section per later stage (registration QC, inpainting, synthesis, segmentation
metrics) when that stage's outputs are there. Links point only to files that exist; images are
linked relative to the report, so the folder can be copied or zipped as a whole.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

from diff4mmlits.config import Config
from diff4mmlits.files import write_text_atomic
from diff4mmlits.htmlpage import STYLE, figure_html, html_table
from diff4mmlits.register.report import section_registration
from diff4mmlits.runfolder import RunFolder

ReportSection = Callable[[RunFolder, Path], str]
"""A function that returns an HTML fragment for the report (``""`` when it has nothing to show)."""

def section_cases(run: RunFolder, report_dir: Path) -> str:
    """The dataset: cases, phases, geometry, label volumes and split."""
    if not run.manifest_path.is_file():
        return ""
    manifest = run.load_manifest()
    split_of = {case_id: name for name, ids in manifest["split"].items() for case_id in ids}
    rows = []
    for case in manifest["cases"]:
        pvp = case["phases"].get(manifest.get("annotated_phase", "PVP"), next(iter(case["phases"].values())))
        label = case.get("label", {})
        rows.append([
            case["id"], ", ".join(case["phases"]), "×".join(map(str, pvp["shape"])),
            "×".join(f"{s:.2g}" for s in pvp["spacing_mm"]), label.get("liver_ml", "–"), label.get("tumor_ml", "–"),
            split_of.get(case["id"], "–"),
        ])
    table = html_table(["case", "phases", "shape (z×y×x)", "spacing (mm)", "liver (mL)", "tumor (mL)", "split"], rows)
    return f"<h2>Dataset</h2><p class='muted'>{html.escape(manifest['dataset'])} ({manifest['layout']} layout)</p>{table}"


def section_previews(run: RunFolder, report_dir: Path) -> str:
    """Preview figures, one per case."""
    figures = sorted(run.previews_dir.glob("*.png"))
    if not figures:
        return ""
    body = "".join(figure_html(path, report_dir, path.stem) for path in figures)
    return f"<h2>Cases</h2><p class='muted'>Each phase at the slice with most tumor; the label (drawn on the annotated phase) as contours: liver green, tumor red.</p>{body}"


def section_inpaint(run: RunFolder, report_dir: Path) -> str:
    """The Normal CT Generator: original, mask and each inpainting method side by side."""
    figures = sorted(run.figures_dir.glob("inpaint_*.png"))
    if not figures:
        return ""
    body = "".join(figure_html(path, report_dir, path.stem.removeprefix("inpaint_")) for path in figures)
    curves = run.model_dir("inpainter") / "curves.png"
    if curves.is_file():
        body += figure_html(curves, report_dir, "inpainter training curves")
    return ("<h2>Inpainting (normal CT)</h2><p class='muted'>Per phase: the registered image, the closed and dilated "
            "tumor mask (red) over the liver (green), and the mask filled by each method.</p>" + body)


def section_segmenter(run: RunFolder, report_dir: Path) -> str:
    """The trained segmenter (plan and curves); see :mod:`diff4mmlits.evaluate.stage`."""
    from diff4mmlits.evaluate.stage import section_segmenter as section

    return section(run, report_dir)


def section_segmentation_metrics(run: RunFolder, report_dir: Path) -> str:
    """Metrics of the test-split predictions; see :mod:`diff4mmlits.evaluate.stage`."""
    from diff4mmlits.evaluate.stage import section_segmentation_metrics as section

    return section(run, report_dir)

def _translators(run: RunFolder, report_dir: Path) -> str:
    """Translators trained into this run folder (``train-translator``), if any."""
    from diff4mmlits.translate.report import section_translators

    return section_translators(run, report_dir)

def section_synthesis(run: RunFolder, report_dir: Path) -> str:
    """Synthesis: autoencoder and synthesizer metrics, contrast per phase (synthetic vs real), figures."""
    from diff4mmlits.synthesize.report import synthesis_section

    return synthesis_section(run, report_dir)


REPORT_SECTIONS: list[ReportSection] = [
    section_cases,
    section_previews,
    section_registration,
    section_inpaint,
    section_synthesis,
    section_segmenter,
    section_segmentation_metrics,
    _translators,
]


def write_run_report(run: RunFolder, config: Config) -> Path:
    """Write ``RUN/report/index.html`` from what the run folder holds."""
    report_dir = run.report_dir
    report_dir.mkdir(parents=True, exist_ok=True)
    sections = [section(run, report_dir) for section in REPORT_SECTIONS]
    body = "\n".join(s for s in sections if s)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>diff4mmlits — "
        f"{html.escape(run.root.name)}</title><style>{STYLE}</style></head><body>"
        f"<h1>diff4mmlits run: {html.escape(run.root.name)}</h1>"
        f"<p class='muted'>preset {html.escape(config.preset)}, seed {config.seed}</p>{body}</body></html>\n"
    )
    return write_text_atomic(report_dir / "index.html", page)
