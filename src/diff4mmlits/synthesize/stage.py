"""The synthesize stages over a run folder: what they read, what they write.

* ``train-autoencoder``: ``normal/<case>/`` (training split; validation split for the metrics)
  → ``models/autoencoder/``.
* ``train-synthesizer``: ``registered/<case>/`` (training split, real tumors) and the autoencoder
  → ``models/diffusion/`` (paper mode) or ``models/diffusion-joint/``.
* ``synthesize``: ``normal/<case>/`` (training split) → ``synthetic/<case>_s<NNN>/`` with
  ``<PHASE>.nii.gz``, ``label.nii.gz``, ``provenance.json``; ``synthetic/summary.json``;
  ``report/figures/synthesis_*.png``.

Under ``torchrun`` the two trainings run data-parallel (DDP) and synthesis shards the cases over
the processes; only rank 0 writes models, summaries and figures.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from diff4mmlits.config import Config
from diff4mmlits.data.case import Case
from diff4mmlits.data.native import read_case_folder, write_case_folder
from diff4mmlits.errors import InputError
from diff4mmlits.files import write_json_atomic
from diff4mmlits.runfolder import RunFolder

log = logging.getLogger(__name__)

INPAINT_MASK = "inpaint_mask"
SUMMARY_FILE = "summary.json"


def _read_cases(folder: Path, case_ids: list[str], what: str, fix: str, extra_names: tuple[str, ...] = ()) -> list[Case]:
    if not folder.is_dir():
        raise InputError(f"no {what} cases here; {fix}", folder)
    missing = [case_id for case_id in case_ids if not (folder / case_id).is_dir()]
    if missing:
        raise InputError(f"{len(missing)} {what} case(s) missing (e.g. {missing[0]}); {fix}", folder)
    return [read_case_folder(folder / case_id, extra_names=extra_names) for case_id in case_ids]


def read_normal_cases(run: RunFolder, split: str) -> list[Case]:
    """The tumor-free cases of a split, from ``normal/`` (written by the inpaint stage)."""
    return _read_cases(run.normal_dir, run.split(split), "normal (inpainted)",
                       f"run 'diff4mmlits inpaint --run {run.root}' first", (INPAINT_MASK,))


def read_registered_cases(run: RunFolder, split: str) -> list[Case]:
    """The registered real cases of a split, from ``registered/``."""
    return _read_cases(run.registered_dir, run.split(split), "registered",
                       f"run 'diff4mmlits register DATASET --run {run.root}' first")


# --- training ------------------------------------------------------------------------------------
def stage_train_autoencoder(run: RunFolder, config: Config, resume: bool = False) -> dict[str, Any]:
    """Train the VQVAE on the normal CT of the training cases (and, a share of the patches, their real
    tumors); validation cases give the metrics."""
    from diff4mmlits.distributed import init_distributed
    from diff4mmlits.synthesize.train_autoencoder import train_autoencoder

    context = init_distributed(config.device)
    train = read_normal_cases(run, "train")
    validation_ids = [c for c in run.split("validation") if (run.normal_dir / c).is_dir()]
    validation = [read_case_folder(run.normal_dir / c, extra_names=(INPAINT_MASK,)) for c in validation_ids]
    tumors = read_registered_cases(run, "train") if config.autoencoder.tumor_patch_fraction > 0 else None
    folder = run.model_dir("autoencoder")
    if not resume and context.is_main:
        _clear_model_folder(folder)
    return train_autoencoder(train, validation, config.autoencoder, folder, seed=config.seed, context=context,
                             resume=resume, tumor_cases=tumors)


def stage_train_synthesizer(run: RunFolder, config: Config, resume: bool = False) -> dict[str, Any]:
    """Train the latent diffusion model of ``config.diffusion.mode`` on the real tumors of the training cases."""
    from diff4mmlits.checkpoint import file_sha256
    from diff4mmlits.distributed import init_distributed
    from diff4mmlits.synthesize.autoencoder import load_autoencoder
    from diff4mmlits.synthesize.diffusion import model_folder_name
    from diff4mmlits.synthesize.train_diffusion import build_tumor_crops, train_diffusion

    context = init_distributed(config.device)
    autoencoder = run.model_dir("autoencoder")
    if not (autoencoder / "weights.safetensors").is_file():
        raise InputError(f"no trained autoencoder; run 'diff4mmlits train-autoencoder --run {run.root}' first", autoencoder)
    codec = load_autoencoder(autoencoder, context.device)
    cases = read_registered_cases(run, "train")
    crops = build_tumor_crops(cases, codec, config.diffusion, np.random.default_rng([config.seed, 31]))
    log.info("train-synthesizer: %d crops around the real tumors of %d training case(s)", len(crops), len(cases))
    folder = run.model_dir(model_folder_name(config.diffusion.mode))
    if not resume and context.is_main:
        _clear_model_folder(folder)
    return train_diffusion(crops, config.diffusion, folder, seed=config.seed, context=context, resume=resume,
                           extra_config={"autoencoder_sha256": file_sha256(autoencoder / "weights.safetensors"),
                                         "training_cases": [c.case_id for c in cases]})


def _clear_model_folder(folder: Path) -> None:
    """Remove a previous training's files (a fresh run must not resume or mix logs)."""
    for name in ("weights.safetensors", "training_state.pt", "log.csv", "curves.png", "config.json", "discriminator.safetensors"):
        (folder / name).unlink(missing_ok=True)


# --- synthesis ---------------------------------------------------------------------------------
def synthetic_case_id(case_id: str, index: int) -> str:
    """``<case>_s<NNN>``."""
    return f"{case_id}_s{index:03d}"


def stage_synthesize(run: RunFolder, config: Config, method: str | None = None, mode: str | None = None,
                     per_case: int | None = None) -> dict[str, Any]:
    """Write ``per_case`` synthetic cases per training case into ``synthetic/`` (see the module doc)."""
    from diff4mmlits.checkpoint import file_sha256
    from diff4mmlits.distributed import barrier, init_distributed, shard
    from diff4mmlits.progress import progress
    from diff4mmlits.synthesize.painters import load_painter

    method = method or config.synthesize.method
    mode = mode or config.diffusion.mode
    per_case = config.synthesize.per_case if per_case is None else per_case
    if per_case < 1:
        raise InputError(f"--per-case {per_case}: must be at least 1")
    context = init_distributed(config.device)
    painter = load_painter(run, method=method, mode=mode, device=context.device)
    case_ids = sorted(run.split("train"))
    if not case_ids:
        raise InputError("the training split is empty; nothing to synthesize from", run.manifest_path)
    models = {}
    for name in ("autoencoder", "diffusion" if mode == "paper" else f"diffusion-{mode}"):
        weights = run.model_dir(name) / "weights.safetensors"
        if method == "ldm" and weights.is_file():
            models[name] = file_sha256(weights)
    if context.is_main:
        if run.synthetic_dir.is_dir():
            shutil.rmtree(run.synthetic_dir)
        run.synthetic_dir.mkdir(parents=True)
    barrier(context)
    jobs = [(index, case_id) for index, case_id in enumerate(case_ids)]
    mine = shard(jobs, context.rank + 1, context.world_size)
    start = time.perf_counter()
    written = 0
    for index, case_id in progress(mine, desc=f"synthesize ({method}{'/' + mode if method == 'ldm' else ''})", unit="case"):
        normal = read_case_folder(run.normal_dir / case_id, extra_names=(INPAINT_MASK,))
        for k in range(per_case):
            seed = [config.seed, index, k]
            synthetic, provenance = painter.paint_with_provenance(normal, np.random.default_rng(seed))
            out_id = synthetic_case_id(case_id, k)
            write_synthetic_case(run.synthetic_dir / out_id, synthetic, {
                "case": out_id, "normal_case": case_id, "seed": seed, "models": models, **provenance,
            })
            written += 1
    seconds = time.perf_counter() - start
    barrier(context)
    if not context.is_main:
        return {}
    summary = summarize_synthesis(run, config, method, mode, per_case, seconds_per_case=seconds / max(written, 1))
    return summary


def write_synthetic_case(folder: Path, case: Case, provenance: dict[str, Any]) -> Path:
    """Write one synthetic case folder as a whole: into ``.<name>.tmp`` first, then renamed."""
    from dataclasses import replace

    tmp = folder.parent / f".{folder.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    write_case_folder(replace(case, case_id=folder.name), tmp)
    write_json_atomic(tmp / "provenance.json", provenance)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


def summarize_synthesis(run: RunFolder, config: Config, method: str, mode: str, per_case: int,
                        seconds_per_case: float) -> dict[str, Any]:
    """``synthetic/summary.json`` (per-phase contrast, synthetic vs real) and the report's figures."""
    from diff4mmlits.data.native import list_case_folders
    from diff4mmlits.synthesize.contrast import measure_tumor_contrasts, summarize_contrasts
    from diff4mmlits.synthesize.figures import plot_synthesis_examples

    synthetic = [read_case_folder(folder) for folder in list_case_folders(run.synthetic_dir)]
    real = read_registered_cases(run, "train")
    synthetic_tumors = [t for case in synthetic for t in measure_tumor_contrasts(case)]
    real_tumors = [t for case in real for t in measure_tumor_contrasts(case)]
    summary = {
        "method": method, "mode": mode if method == "ldm" else None, "per_case": per_case, "cases": len(synthetic),
        "seconds_per_case": round(seconds_per_case, 3),
        "contrast_hu": {"synthetic": summarize_contrasts(synthetic_tumors), "real": summarize_contrasts(real_tumors)},
    }
    write_json_atomic(run.synthetic_dir / SUMMARY_FILE, summary)
    for old in run.figures_dir.glob("synthesis_*.png") if run.figures_dir.is_dir() else []:
        old.unlink()
    plot_synthesis_examples(synthetic[: config.synthesize.figures], real, run.figures_dir)
    log.info("synthesize: %d synthetic case(s) in %s (%.1f s per case)", len(synthetic), run.synthetic_dir, seconds_per_case)
    return summary
