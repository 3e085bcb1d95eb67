"""The synthesis section of ``report/index.html`` (only what exists in the run folder is shown)."""

from __future__ import annotations

import html
from pathlib import Path

from diff4mmlits import PHASES
from diff4mmlits.files import read_json_or_none
from diff4mmlits.runfolder import RunFolder


def _read_json(path: Path) -> dict:
    return read_json_or_none(path) or {}


def section_synthesis(run: RunFolder, report_dir: Path) -> str:
    """HTML: model metrics, per-phase tumor-to-liver contrast (synthetic vs real), curves and example figures."""
    from diff4mmlits.htmlpage import figure_html, html_table

    summary = _read_json(run.synthetic_dir / "summary.json")
    autoencoder = _read_json(run.autoencoder_dir / "config.json")
    parts = []
    if autoencoder.get("metrics"):
        m = autoencoder["metrics"]
        where = "held-out" if m.get("held_out") else "training"
        parts.append(f"<p>Autoencoder reconstruction ({where} patches): MAE {m['mae_liver_hu']:.1f} HU in the liver, "
                     f"{m['mae_hu']:.1f} HU overall, PSNR {m['psnr_db']:.1f} dB.</p>")
    for mode in ("paper", "profile", "joint"):
        record = _read_json(run.diffusion_dir(mode) / "config.json")
        if record.get("metrics"):
            m = record["metrics"]
            loss = "Eq. 3 + tumor term" if record.get("tumor_loss_weight", 0) > 0 else "Eq. 3"
            parts.append(f"<p>Synthesizer ({html.escape(record['mode'])} mode): diffusion loss ({loss}) {m['evaluation_loss_initial']:.3f} → "
                         f"{m['evaluation_loss_final']:.3f} on {m['crops']} crops around real tumors.</p>")
    if summary:
        contrast = summary.get("contrast_hu", {})
        rows = []
        for phase in PHASES:
            real = contrast.get("real", {}).get(phase)
            synthetic = contrast.get("synthetic", {}).get(phase)
            if real or synthetic:
                rows.append([phase,
                             f"{real['mean']:+.1f} ± {real['std']:.1f} (n={real['count']})" if real else "–",
                             f"{synthetic['mean']:+.1f} ± {synthetic['std']:.1f} (n={synthetic['count']})" if synthetic else "–"])
        method = summary["method"] + (f" ({summary['mode']} mode)" if summary.get("mode") else "")
        healthy = summary.get("healthy_scans", 0)
        into = f"per training case and healthy scan ({healthy} healthy)" if healthy else "per training case"
        parts.append(f"<p>{summary['cases']} synthetic case(s) by {html.escape(method)}, {summary['per_case']} {into}, "
                     f"{summary['seconds_per_case']:.2f} s per case.</p>")
        quality = summary.get("quality")
        if quality:
            parts.append(f"<p>Quality control: {quality['rejected']} of {quality['paintings']} painted tumors rejected "
                         f"({100 * quality['rejected_share']:.0f} %: contrast outside the real range or a seam), "
                         f"{quality['left_out']} left out after the retries.</p>")
        if rows:
            parts.append("<p class='muted'>Tumor − surrounding liver, mean HU per phase (± spread over tumors).</p>"
                         + html_table(["phase", "real tumors", "synthetic tumors"], rows))
        edges = summary.get("edge_fraction") or {}
        if edges.get("real") and edges.get("synthetic"):
            real, synthetic = edges["real"], edges["synthetic"]
            parts.append(f"<p>Share of the contrast at the tumor's edge (outermost voxels / liver just outside, median): "
                         f"real {real['edge']:.2f} / {real['outside']:.2f} (n={real['count']}), "
                         f"synthetic {synthetic['edge']:.2f} / {synthetic['outside']:.2f} (n={synthetic['count']}).</p>")
    curves = [folder / "curves.png" for folder in (run.autoencoder_dir, *(run.diffusion_dir(m) for m in ("paper", "profile", "joint")))]
    parts.extend(figure_html(path, report_dir, f"training curves: {path.parent.name}") for path in curves if path.is_file())
    figures = sorted(run.figures_dir.glob("synthesis_*.png")) if run.figures_dir.is_dir() else []
    parts.extend(figure_html(path, report_dir, path.stem) for path in figures)
    if not parts:
        return ""
    return "<h2>Synthesis</h2>" + "".join(parts)
