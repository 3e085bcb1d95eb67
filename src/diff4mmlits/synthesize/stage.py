"""The synthesize stages over a run folder: what they read, what they write.

* ``train-autoencoder``: ``normal/<case>/`` (training split and the healthy scans of
  ``data.healthy_cases``; validation split for the metrics) → ``models/autoencoder/``.
* ``train-synthesizer``: ``registered/<case>/`` (training split, real tumors) and the autoencoder
  → ``models/diffusion/`` (paper mode) or ``models/diffusion-joint/``.
* ``synthesize``: ``normal/<case>/`` (training split, then the healthy scans) → ``synthetic/<case>_s<NNN>/`` with
  ``<PHASE>.nii.gz``, ``label.nii.gz``, ``provenance.json``; ``synthetic/summary.json``;
  ``report/figures/synthesis_*.png``.

Under ``torchrun`` the two trainings run data-parallel (DDP) and synthesis shards the cases over
the processes; only rank 0 writes models, summaries and figures.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from diff4mmlits.checkpoint import CONFIG_NAME, STATE_NAME, WEIGHTS_NAME, file_sha256
from diff4mmlits.config import Config
from diff4mmlits.distributed import barrier, init_distributed, shard
from diff4mmlits.errors import InputError
from diff4mmlits.files import write_json_atomic
from diff4mmlits.progress import progress
from diff4mmlits.runfolder import PAINTED_SPLITS, PROVENANCE_FILE, RunFolder
from diff4mmlits.stage import Stage
from diff4mmlits.synthesize.cut_painter import train_cut_painter
from diff4mmlits.synthesize.painters import load_painter
from diff4mmlits.synthesize.report import section_synthesis
from diff4mmlits.training import CROP_STREAM, CURVES_NAME, LOG_NAME

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"


# --- training ------------------------------------------------------------------------------------
def stage_train_autoencoder(run: RunFolder, config: Config, resume: bool = False) -> dict[str, Any]:
    """Train the VQVAE on the normal CT of the training cases and healthy scans (and, a share of the
    patches, the training cases' real tumors); validation cases give the metrics."""
    from diff4mmlits.synthesize.train_autoencoder import train_autoencoder

    context = init_distributed(config.device)
    train = run.read_cases("normal", PAINTED_SPLITS)
    validation = run.read_cases("normal", "validation")
    tumors = run.read_cases("registered", "train") if config.autoencoder.tumor_patch_fraction > 0 else None
    folder = run.autoencoder_dir
    if not resume and context.is_main:
        _clear_model_folder(folder)
    return train_autoencoder(train, validation, config.autoencoder, folder, seed=config.seed, context=context,
                             resume=resume, tumor_cases=tumors)


def stage_train_synthesizer(run: RunFolder, config: Config, resume: bool = False) -> dict[str, Any]:
    """Train the latent diffusion model of ``config.diffusion.mode`` on the real tumors of the training cases."""
    from diff4mmlits.synthesize.autoencoder import load_autoencoder
    from diff4mmlits.synthesize.train_diffusion import build_tumor_crops, train_diffusion

    context = init_distributed(config.device)
    autoencoder = run.autoencoder_dir
    if not (autoencoder / WEIGHTS_NAME).is_file():
        raise InputError(f"no trained autoencoder; run 'diff4mmlits train-autoencoder --run {run.root}' first", autoencoder)
    codec = load_autoencoder(autoencoder, context.device)
    cases = run.read_cases("registered", "train")
    crops = build_tumor_crops(cases, codec, config.diffusion, np.random.default_rng([config.seed, CROP_STREAM]),
                              config.inpaint.close_kernel_vox, config.inpaint.dilate_kernel_vox)
    log.info("train-synthesizer: %d crops around the real tumors of %d training case(s)", len(crops), len(cases))
    folder = run.diffusion_dir(config.diffusion.mode)
    if not resume and context.is_main:
        _clear_model_folder(folder)
    return train_diffusion(crops, config.diffusion, folder, seed=config.seed, context=context, resume=resume,
                           extra_config={"autoencoder_sha256": file_sha256(autoencoder / WEIGHTS_NAME),
                                         "training_cases": [c.case_id for c in cases]})


def _clear_model_folder(folder: Path) -> None:
    """Remove a previous training's files (a fresh run must not resume or mix logs)."""
    for name in (WEIGHTS_NAME, STATE_NAME, LOG_NAME, CURVES_NAME, CONFIG_NAME, "discriminator.safetensors"):
        (folder / name).unlink(missing_ok=True)


# --- synthesis ---------------------------------------------------------------------------------
def synthetic_case_id(case_id: str, index: int) -> str:
    """``<case>_s<NNN>``."""
    return f"{case_id}_s{index:03d}"


def stage_synthesize(run: RunFolder, config: Config) -> dict[str, Any]:
    """Write ``synthesize.per_case`` synthetic cases per training case into ``synthetic/`` with the
    painter of ``synthesize.method`` (and ``diffusion.mode``); see the module doc."""
    method, mode, per_case = config.synthesize.method, config.diffusion.mode, config.synthesize.per_case
    if per_case < 1:
        raise InputError(f"--per-case {per_case}: must be at least 1")
    context = init_distributed(config.device)
    painter = load_painter(run, method=method, mode=mode, device=context.device, config=config)
    train_ids = sorted(run.split("train"))
    if not train_ids:
        raise InputError("the training split is empty; nothing to synthesize from", run.manifest_path)
    case_ids = train_ids + sorted(run.split("healthy"))  # the training cases first: their seeds do not depend on healthy scans
    models = {}
    for name, folder in (("autoencoder", run.autoencoder_dir), (run.diffusion_dir(mode).name, run.diffusion_dir(mode))):
        if method == "ldm" and (folder / WEIGHTS_NAME).is_file():
            models[name] = file_sha256(folder / WEIGHTS_NAME)
    if context.is_main:
        run.clear_area("synthetic")
        run.synthetic_dir.mkdir(parents=True)
    barrier(context)
    jobs = [(index, case_id) for index, case_id in enumerate(case_ids)]
    mine = shard(jobs, context.rank + 1, context.world_size)
    start = time.perf_counter()
    written = 0
    for index, case_id in progress(mine, desc=f"synthesize ({method}{'/' + mode if method == 'ldm' else ''})", unit="case"):
        normal = run.read_case("normal", case_id)
        for k in range(per_case):
            seed = [config.seed, index, k]
            synthetic, provenance = painter.paint_with_provenance(normal, np.random.default_rng(seed))
            out_id = synthetic_case_id(case_id, k)
            run.write_case("synthetic", synthetic, case_id=out_id, json_files={PROVENANCE_FILE: {
                "case": out_id, "normal_case": case_id, "seed": seed, "models": models, **provenance,
            }})
            written += 1
    seconds = time.perf_counter() - start
    barrier(context)
    if not context.is_main:
        return {}
    summary = summarize_synthesis(run, config, method, mode, per_case, seconds_per_case=seconds / max(written, 1))
    return summary


def summarize_synthesis(run: RunFolder, config: Config, method: str, mode: str, per_case: int,
                        seconds_per_case: float) -> dict[str, Any]:
    """``synthetic/summary.json`` (per-phase contrast and edge fraction, synthetic vs real) and the report's figures."""
    from diff4mmlits.synthesize.contrast import measure_tumor_contrasts, summarize_contrasts, summarize_edges
    from diff4mmlits.synthesize.figures import plot_synthesis_examples

    synthetic = run.read_cases("synthetic")
    real = run.read_cases("registered", "train")
    synthetic_tumors = [t for case in synthetic for t in measure_tumor_contrasts(case)]
    real_tumors = [t for case in real for t in measure_tumor_contrasts(case)]
    summary = {
        "method": method, "mode": mode if method == "ldm" else None, "per_case": per_case, "cases": len(synthetic),
        "healthy_scans": len(run.split("healthy")),
        "seconds_per_case": round(seconds_per_case, 3),
        "contrast_hu": {"synthetic": summarize_contrasts(synthetic_tumors), "real": summarize_contrasts(real_tumors)},
        "edge_fraction": {"synthetic": summarize_edges(synthetic_tumors), "real": summarize_edges(real_tumors)},
        "quality": quality_summary([c.case_id for c in synthetic], run),
    }
    write_json_atomic(run.synthetic_dir / SUMMARY_FILE, summary)
    for old in run.figures_dir.glob("synthesis_*.png") if run.figures_dir.is_dir() else []:
        old.unlink()
    plot_synthesis_examples(synthetic[: config.synthesize.figures], real, run.figures_dir)
    log.info("synthesize: %d synthetic case(s) in %s (%.1f s per case)", len(synthetic), run.synthetic_dir, seconds_per_case)
    return summary


def quality_summary(case_ids: list[str], run: RunFolder) -> dict[str, Any] | None:
    """How many painted tumors quality control rejected, from the cases' ``provenance.json`` (None when it was off)."""
    rejected = left_out = paintings = forced = 0
    checked = False
    for case_id in case_ids:
        path = run.synthetic_dir / case_id / PROVENANCE_FILE
        record = json.loads(path.read_text()) if path.is_file() else {}
        for tumor in record.get("tumors", []):
            if "quality" in tumor:
                checked = True
                paintings += len(tumor["quality"])
        rejected += int(record.get("quality_rejected", 0))
        left_out += int(record.get("quality_left_out", 0))
        forced += int(record.get("quality_forced", 0))
    if not checked:
        return None
    return {"paintings": paintings, "rejected": rejected, "left_out": left_out, "kept_despite_quality": forced,
            "rejected_share": round(rejected / max(paintings, 1), 3)}


def _painter_needs(config: Config) -> tuple[str, ...]:
    """The stages the configured painter reads: the diffusion models, the CUT painter, or only the
    registered tumors (handcrafted)."""
    if config.synthesize.method == "ldm":
        return ("register", "inpaint", "train-autoencoder", "train-synthesizer")
    if config.synthesize.method == "cut":
        return ("register", "inpaint", "train-cut-painter")
    return ("register", "inpaint")


STAGES: list[Stage] = [
    Stage("train-autoencoder", "the synthesizer's autoencoder on normal CT (models/autoencoder/)",
          stage_train_autoencoder, ("autoencoder",), ("register", "inpaint")),
    Stage("train-synthesizer", "the latent diffusion tumor synthesizer (models/diffusion/)", stage_train_synthesizer,
          ("autoencoder", "diffusion", "inpaint.close_kernel_vox", "inpaint.dilate_kernel_vox"),
          ("register", "train-autoencoder")),
    Stage("synthesize", "synthetic cases with aligned tumors in every phase (synthetic/)", stage_synthesize,
          ("synthesize", "diffusion"), ("register", "inpaint", "train-autoencoder", "train-synthesizer", "train-cut-painter"),
          needs=_painter_needs, report=section_synthesis),
]

COMMAND_STAGES: list[Stage] = [
    Stage("train-cut-painter", "the CUT tumor painter, the paper's Table V baseline (models/cut-painter/; "
          "'train-translator --painter', not part of 'run')", train_cut_painter, ("translate", "diffusion"),
          ("register", "inpaint"), command="train-translator --painter", in_run=False),
]
"""Stage commands over a run folder that ``run`` leaves out."""
