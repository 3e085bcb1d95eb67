"""Runs the stages in order over a run folder, skipping those that are up to date.

A stage is up to date when its stamp (``RUN/.stages/<stage>.json``) records the same fingerprint
as now: the fingerprint covers the stage's configuration sections, the seed and the fingerprints of
the stages it reads from. Change a setting and that stage and everything downstream runs again.

Each stage is one function ``(run: RunFolder, config: Config) -> None`` that reads the run folder
and writes its outputs there; the functions that do the work take and return in-memory cases and
live in the stage's package (``register/``, ``inpaint/``...).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diff4mmlits.config import Config
from diff4mmlits.data.case import Case, liver_and_tumor_volume_ml
from diff4mmlits.data.dataset import detect_layout, load_dataset
from diff4mmlits.data.volume import Volume
from diff4mmlits.errors import InputError
from diff4mmlits.runfolder import RunFolder, fingerprint_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline over a run folder."""

    name: str
    help: str
    run: Callable[[RunFolder, Config], None]
    config_sections: tuple[str, ...] = ()
    """Top-level config keys whose values decide whether the stage must run again."""
    upstream: tuple[str, ...] = ()
    """Stages whose outputs this stage reads."""


# --- the dataset: ingest ---------------------------------------------------------------------
def volume_checksum(volume: Volume) -> str:
    """A hash of a volume's voxels and geometry (layout-independent input checksum)."""
    return fingerprint_of(
        __import__("hashlib").sha256(np.ascontiguousarray(volume.array).tobytes()).hexdigest(),
        volume.spacing_mm, volume.origin_mm, np.round(volume.direction, 6).tolist(),
    )


def split_cases(case_ids: list[str], seed: int, test_fraction: float, validation_fraction: float) -> dict[str, list[str]]:
    """Deterministic train / validation / test split of case ids.

    With 3 or more cases, at least one case is held out for testing; with 4 or more, at least one
    for validation. Smaller datasets train on everything (and say so in the manifest).
    """
    ids = sorted(case_ids)
    random.Random(seed).shuffle(ids)
    n = len(ids)
    n_test = max(1, round(test_fraction * n)) if n >= 3 else 0
    remaining = n - n_test
    n_val = max(1, round(validation_fraction * remaining)) if remaining >= 3 else 0
    test, validation, train = ids[:n_test], ids[n_test:n_test + n_val], ids[n_test + n_val:]
    return {"train": sorted(train), "validation": sorted(validation), "test": sorted(test)}


def describe_case(case: Case) -> dict[str, Any]:
    """Manifest entry of one case: phases with geometry and checksums, label volumes."""
    entry: dict[str, Any] = {"id": case.case_id, "phases": {}}
    for name, volume in case.phases.items():
        entry["phases"][name] = {
            "shape": list(volume.shape),
            "spacing_mm": list(volume.spacing_mm),
            "origin_mm": list(volume.origin_mm),
            "checksum": volume_checksum(volume),
        }
    if case.label is not None:
        liver_ml, tumor_ml = liver_and_tumor_volume_ml(case.label)
        entry["label"] = {"checksum": volume_checksum(case.label), "liver_ml": round(liver_ml, 2), "tumor_ml": round(tumor_ml, 2)}
    return entry


def ingest_dataset(dataset: str | Path, run: RunFolder, config: Config) -> dict[str, Any]:
    """Validate the dataset and write ``manifest.json`` (cases, geometry, checksums, split)."""
    from diff4mmlits.data.validate import validate_dataset

    dataset = Path(dataset).resolve()
    report = validate_dataset(dataset, annotated_phase=config.data.annotated_phase)
    report.raise_for_errors()
    for warning in report.warnings:
        log.warning("%s", warning)
    log.info("validate: %d case(s) in %s, no errors, %d warning(s)", len(report.rows), dataset, len(report.warnings))
    cases = load_dataset(dataset, annotated_phase=config.data.annotated_phase)
    manifest = {
        "dataset": str(dataset),
        "layout": detect_layout(dataset),
        "annotated_phase": config.data.annotated_phase,
        "cases": [describe_case(case) for case in cases],
        "split": split_cases([c.case_id for c in cases], config.seed, config.data.test_fraction, config.data.validation_fraction),
    }
    run.save_manifest(manifest)
    return manifest


def load_split_cases(run: RunFolder, split: str | Iterable[str] | None = None) -> list[Case]:
    """Input cases of the run's dataset, optionally only those of a split (``train``/``validation``/``test``)."""
    manifest = run.load_manifest()
    cases = load_dataset(run.dataset_path(), annotated_phase=manifest.get("annotated_phase", "PVP"))
    if split is None:
        return cases
    splits = [split] if isinstance(split, str) else list(split)
    wanted = {case_id for name in splits for case_id in run.split(name)}
    return [case for case in cases if case.case_id in wanted]


def stage_previews(run: RunFolder, config: Config) -> None:
    """A preview figure per input case: the phases side by side with the label contour."""
    from diff4mmlits.figures import plot_case_preview
    from diff4mmlits.progress import progress

    if not config.preview.enabled:
        return
    cases = load_split_cases(run)
    for case in progress(cases, desc="previews", unit="case"):
        plot_case_preview(case, run.previews_dir / f"{case.case_id}.png", window_hu=config.preview.window_hu)


def stage_register(run: RunFolder, config: Config) -> None:
    """Liver-focused registration of every phase onto the annotated phase: ``registered/<case>/``."""
    from diff4mmlits.register.stage import register_run

    register_run(run, config)


def stage_train_inpainter(run: RunFolder, config: Config) -> None:
    """``models/inpainter/``: the FFC inpainter trained on the registered train + validation cases."""
    from diff4mmlits.inpaint.stage import stage_train_inpainter as train

    train(run, config)


def stage_inpaint(run: RunFolder, config: Config) -> None:
    """``normal/<case>/``: every registered case with its tumors inpainted away, in every phase."""
    from diff4mmlits.inpaint.stage import stage_inpaint as inpaint

    inpaint(run, config)


def stage_report(run: RunFolder, config: Config) -> None:
    """``report/index.html``: what the run holds, with its figures and tables."""
    from diff4mmlits.evaluate.report import write_run_report

    write_run_report(run, config)


def stage_train(run: RunFolder, config: Config) -> None:
    """``models/segmenter/``: the multimodal segmenter trained on real + synthetic cases."""
    from diff4mmlits.segment.stage import stage_train as run_train

    run_train(run, config)


def stage_predict(run: RunFolder, config: Config) -> None:
    """``predictions/<case>.nii.gz`` for the test split."""
    from diff4mmlits.segment.stage import stage_predict as run_predict

    run_predict(run, config)


def stage_evaluate(run: RunFolder, config: Config) -> None:
    """``report/metrics.csv`` and figures: the test-split predictions scored against their labels."""
    from diff4mmlits.evaluate.stage import stage_evaluate as run_evaluate

    run_evaluate(run, config)

def stage_train_autoencoder(run: RunFolder, config: Config) -> None:
    """The synthesizer's VQ autoencoder on the normal CT (models/autoencoder)."""
    from diff4mmlits.synthesize.stage import stage_train_autoencoder as train

    train(run, config)


def stage_train_synthesizer(run: RunFolder, config: Config) -> None:
    """The latent diffusion tumor synthesizer on the real tumors (models/diffusion[-joint])."""
    from diff4mmlits.synthesize.stage import stage_train_synthesizer as train

    train(run, config)


def stage_synthesize(run: RunFolder, config: Config) -> None:
    """Synthetic cases with new tumors painted into the normal CT (synthetic/)."""
    from diff4mmlits.synthesize.stage import stage_synthesize as synthesize

    synthesize(run, config)


# --- the stages, in order ----------------------------------------------------------------------
STAGES: list[Stage] = [
    Stage("previews", "preview figure per case", stage_previews, ("preview",), ()),
    Stage("register", "every phase registered onto the annotated phase (registered/)", stage_register, ("register",), ()),
    Stage("train-inpainter", "the FFC inpainter trained on the registered cases (models/inpainter/)",
          stage_train_inpainter, ("inpaint",), ("register",)),
    Stage("inpaint", "tumor-free normal CT of every phase (normal/)", stage_inpaint, ("inpaint",),
          ("train-inpainter", "register")),
    Stage("train-autoencoder", "the synthesizer's autoencoder on normal CT", stage_train_autoencoder,
          ("autoencoder",), ("register", "inpaint")),
    Stage("train-synthesizer", "the latent diffusion tumor synthesizer", stage_train_synthesizer,
          ("autoencoder", "diffusion"), ("register", "train-autoencoder")),
    Stage("synthesize", "synthetic cases with aligned tumors in every phase", stage_synthesize,
          ("synthesize", "diffusion"), ("register", "inpaint", "train-autoencoder", "train-synthesizer")),

    Stage("train", "the 4-phase segmenter trained on real + synthetic cases (models/segmenter/)", stage_train,
          ("segment",), ("register", "inpaint", "synthesize")),
    Stage("predict", "labels of the held-out test cases (predictions/)", stage_predict, ("segment",), ("train",)),
    Stage("evaluate", "metrics of the test predictions (report/metrics.csv)", stage_evaluate, ("evaluate",), ("predict",)),
    Stage("report", "report/index.html", stage_report, (), ()),
]


def stage_names() -> list[str]:
    return [stage.name for stage in STAGES]


def get_stage(name: str) -> Stage:
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise InputError(f"unknown stage {name!r}; stages are {', '.join(stage_names())}")


def stage_fingerprint(run: RunFolder, stage: Stage, config: Config) -> str:
    """What a stage's result depends on: its config sections, the seed, upstream results, the manifest."""
    sections = {key: getattr(config, key).model_dump(mode="json") if hasattr(getattr(config, key), "model_dump")
                else getattr(config, key) for key in stage.config_sections}
    upstream = {name: (run.read_stamp(name) or {}).get("fingerprint") for name in stage.upstream}
    manifest = run.load_manifest() if run.manifest_path.is_file() else {}
    return fingerprint_of(stage.name, sections, config.seed, upstream, manifest.get("cases"), manifest.get("split"))


def is_up_to_date(run: RunFolder, stage: Stage, config: Config) -> bool:
    stamp = run.read_stamp(stage.name)
    return stamp is not None and stamp.get("fingerprint") == stage_fingerprint(run, stage, config)


def run_stage(run: RunFolder, stage: Stage, config: Config, force: bool = False) -> bool:
    """Run one stage unless it is up to date; return whether it ran."""
    if not force and stage.name != "report" and is_up_to_date(run, stage, config):
        log.info("%s: up to date, skipped", stage.name)
        return False
    run.clear_stamp(stage.name)
    log.info("%s: running", stage.name)
    start = time.perf_counter()
    stage.run(run, config)
    seconds = time.perf_counter() - start
    run.write_stamp(stage.name, stage_fingerprint(run, stage, config), {"seconds": round(seconds, 2)})
    log.info("%s: done in %.1f s", stage.name, seconds)
    return True


def run_pipeline(
    dataset: str | Path,
    run: RunFolder,
    config: Config,
    only: Iterable[str] | None = None,
    force: bool = False,
) -> RunFolder:
    """Ingest ``dataset`` into ``run`` and run every stage (or ``only`` those), skipping up-to-date ones."""
    run.root.mkdir(parents=True, exist_ok=True)
    if run.exists():
        previous = run.load_config()
        if previous.model_dump() != config.model_dump():
            log.info("configuration changed since the last run; stages it affects will run again")
    run.save_config(config)
    ingest_dataset(dataset, run, config)
    wanted = set(only) if only is not None else None
    if wanted is not None:
        for name in wanted:
            get_stage(name)
    for stage in STAGES:
        if wanted is None or stage.name in wanted:
            run_stage(run, stage, config, force=force)
    return run
