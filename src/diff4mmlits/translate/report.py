"""The translate section of ``report/index.html``: each translator in the run, its losses and pictures."""

from __future__ import annotations

from pathlib import Path

from diff4mmlits.checkpoint import CONFIG_NAME
from diff4mmlits.files import read_json_or_none
from diff4mmlits.htmlpage import figure_html, html_table
from diff4mmlits.runfolder import RunFolder
from diff4mmlits.training import CURVES_NAME, LOG_NAME, read_log


def section_translators(run: RunFolder, report_dir: Path) -> str:
    """A table of the run's translators (``models/translator-*``) with their last losses, curves and previews."""
    folders = sorted(p for p in run.models_dir.glob("translator-*") if (p / CONFIG_NAME).is_file()) if run.models_dir.is_dir() else []
    if not folders:
        return ""
    rows, figures = [], []
    for folder in folders:
        config = read_json_or_none(folder / CONFIG_NAME) or {}
        log_rows = read_log(folder / LOG_NAME)
        last = log_rows[-1] if log_rows else {}
        losses = ", ".join(f"{k} {v:.3g}" for k, v in last.items() if k not in ("step", "lr", "seconds"))
        rows.append([folder.name, config.get("method", "?"), config.get("step", "?"),
                     f"{config.get('source_phase')} → {config.get('target_phase')}",
                     len(config.get("source_cases", [])), len(config.get("target_cases", [])), losses or "–"])
        for name, caption in ((CURVES_NAME, "training losses"), ("preview.png", "source slices and their translations")):
            if (folder / name).is_file():
                figures.append(figure_html(folder / name, report_dir, f"{folder.name}: {caption}"))
    table = html_table(["model", "method", "steps", "phases", "source cases", "target cases", "last losses"], rows)
    note = ("<p class='muted'>Unpaired translators (train-translator): translate a labelled dataset into another "
            "modality with 'diff4mmlits translate --model MODEL INPUT OUTPUT'; labels are carried over unchanged.</p>")
    return f"<h2>Translators</h2>{note}{table}{''.join(figures)}"

