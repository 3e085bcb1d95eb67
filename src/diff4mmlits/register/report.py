"""The registration section of ``report/index.html``: a table of qc.json numbers and the qc.png figures."""

from __future__ import annotations

import html
from pathlib import Path

from diff4mmlits.htmlpage import figure_html, html_table
from diff4mmlits.register.qc import QC_PNG, read_qc
from diff4mmlits.runfolder import RunFolder


def section_registration(run: RunFolder, report_dir: Path) -> str:
    """Per case and phase: the stage kept, similarity and Dice before → after, seconds; then the figures."""
    if not run.registered_dir.is_dir():
        return ""
    rows: list[list[object]] = []
    figures: list[str] = []
    for folder in sorted(p for p in run.registered_dir.iterdir() if p.is_dir()):
        qc = read_qc(folder)
        if qc is None:
            continue
        for name, entry in qc.get("phases", {}).items():
            if entry.get("status") != "registered":
                continue
            rows.append([
                qc["case"], name, entry.get("kept", "–"),
                _pair(entry.get("nmi_region")), _pair(entry.get("liver_dice")), _pair(entry.get("tumor_dice")),
                "; ".join(entry.get("fallback", [])) or "–", entry.get("seconds", "–"),
            ])
        if (folder / QC_PNG).is_file():
            figures.append(figure_html(folder / QC_PNG, report_dir, qc["case"]))
    if not rows:
        return ""
    table = html_table(["case", "phase", "stage kept", "NMI", "liver Dice", "tumor Dice", "fallback", "seconds"], rows)
    method = html.escape(str(qc.get("method", "")))
    return (
        "<h2>Registration</h2>"
        f"<p class='muted'>Every phase registered onto the annotated phase (method {method}, liver-focused); "
        "before → after. NMI: normalised mutual information of the intensities in the liver (the body when a case has no liver label; 1–2, higher "
        "is more alike). Dice: the phase's own label moved onto the annotated grid (phantom truth only).</p>"
        f"{table}{''.join(figures)}"
    )


def _pair(values: object) -> str:
    if not isinstance(values, dict) or values.get("before") is None or values.get("after") is None:
        return "–"
    return f"{values['before']:.3f} → {values['after']:.3f}"
