"""The dataset enters a run folder: validation, ``manifest.json`` (cases, geometry, checksums, the
train / validation / test split), opening a run folder for a command, and the preview figures.

``open_run`` is the one way a command opens a run folder: a new one is created from a dataset with
a preset, an existing one is reopened with its saved configuration (``--set`` and ``--device``
applied on top).
"""

from __future__ import annotations

import fnmatch
import hashlib
import html
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from diff4mmlits import LABEL_LIVER, LABEL_TUMOR
from diff4mmlits.config import PRESET_NAMES, Config, apply_overrides, resolve_config
from diff4mmlits.data.case import Case, liver_and_tumor_volume_ml
from diff4mmlits.data.dataset import detect_layout, load_dataset
from diff4mmlits.data.validate import validate_dataset
from diff4mmlits.data.volume import Volume
from diff4mmlits.distributed import is_main_process
from diff4mmlits.errors import InputError
from diff4mmlits.files import refuse_output_in_input
from diff4mmlits.htmlpage import figure_html, html_table
from diff4mmlits.progress import progress
from diff4mmlits.runfolder import RunFolder, fingerprint_of
from diff4mmlits.stage import Stage

log = logging.getLogger(__name__)


# --- the manifest ------------------------------------------------------------------------------
def volume_checksum(volume: Volume) -> str:
    """A hash of a volume's voxels and geometry (layout-independent input checksum)."""
    return fingerprint_of(
        hashlib.sha256(np.ascontiguousarray(volume.array).tobytes()).hexdigest(),
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


def healthy_case_ids(cases: Sequence[Case], patterns: Sequence[str]) -> list[str]:
    """The ids of ``cases`` that ``data.healthy_cases`` names (ids or shell patterns), sorted.

    Raises:
        InputError: a pattern matches no case, or a named case has no liver or holds a tumor (a
            healthy scan is labelled liver only: the painter needs its liver, and a tumor would be
            painted over and lost).
    """
    ids = [case.case_id for case in cases]
    for pattern in patterns:
        if not fnmatch.filter(ids, pattern):
            raise InputError(f"data.healthy_cases: {pattern!r} matches no case of the dataset; check the name or pattern")
    healthy = {i for i in ids if any(fnmatch.fnmatchcase(i, p) for p in patterns)}
    for case in cases:
        if case.case_id not in healthy:
            continue
        if case.label is None or not (case.label.array == LABEL_LIVER).any():
            raise InputError(f"{case.case_id}: named in data.healthy_cases but its label holds no liver (1); "
                             "label the liver of a healthy scan so tumors can be painted into it")
        if (case.label.array == LABEL_TUMOR).any():
            raise InputError(f"{case.case_id}: named in data.healthy_cases but its label holds a tumor (2); "
                             "a healthy scan is labelled liver only; take it out of data.healthy_cases")
    return sorted(healthy)


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


def ingest_dataset(dataset: str | Path, run: RunFolder, config: Config, require_label: bool = True) -> dict[str, Any]:
    """Validate the dataset and write ``manifest.json`` (cases, geometry, checksums, split).

    ``require_label=False`` (``register`` alone) accepts cases without a label: they are registered
    on the body mask; training stages then say which label is missing."""
    dataset = Path(dataset).resolve()
    report = validate_dataset(dataset, require_label=require_label, annotated_phase=config.data.annotated_phase)
    report.raise_for_errors()
    for warning in report.warnings:
        log.warning("%s", warning)
    log.info("validate: %d case(s) in %s, no errors, %d warning(s)", len(report.rows), dataset, len(report.warnings))
    cases = load_dataset(dataset, require_label=require_label, annotated_phase=config.data.annotated_phase)
    healthy = healthy_case_ids(cases, config.data.healthy_cases)
    split = split_cases([c.case_id for c in cases if c.case_id not in healthy], config.seed,
                        config.data.test_fraction, config.data.validation_fraction)
    if healthy:  # the key only when used: a manifest without healthy scans stays as it was
        split["healthy"] = healthy
        log.info("validate: %d healthy scan(s) to paint into (data.healthy_cases), not in any split", len(healthy))
    manifest = {
        "dataset": str(dataset),
        "layout": detect_layout(dataset),
        "annotated_phase": config.data.annotated_phase,
        "cases": [describe_case(case) for case in cases],
        "split": split,
    }
    run.save_manifest(manifest)
    return manifest


# --- opening a run folder -----------------------------------------------------------------------
def check_same_dataset(run: RunFolder, dataset: str | Path) -> None:
    """Refuse a dataset other than the one the run folder was made from: its stages' outputs (registered
    cases, models) belong to that one. A folder without a readable manifest has nothing to protect."""
    try:
        recorded = run.dataset_path() if run.manifest_path.is_file() else None
    except InputError:  # damaged: ingest writes it again
        return
    if recorded is not None and recorded.resolve() != Path(dataset).resolve():
        raise InputError(f"this run folder was made from {recorded}, not {dataset}; use another --run folder", run.root)


def open_run(run_dir: str | Path, dataset: str | Path | None = None, preset: str | None = None,
             config_file: str | Path | None = None, overrides: Sequence[str] = (), device: str | None = None,
             save: bool = False, create: bool = False) -> tuple[RunFolder, Config]:
    """The run folder of a command and the configuration it runs with.

    Without ``dataset`` the folder must exist: its ``config.yaml`` with ``overrides`` and ``device``
    applied (saved only with ``save``); with ``create`` (``train-translator``, which needs no
    dataset) a folder without a configuration, or a ``config_file``, gets a new one from ``preset``.
    With ``dataset`` (``register``) a new folder is created from ``preset`` (default ``demo``),
    ``config_file`` and ``overrides``; an existing one keeps its preset and dataset and gets the
    overrides, and the dataset is validated and the manifest rewritten. Nothing is written when the
    dataset has errors. Under ``torchrun`` only rank 0 writes.
    """
    run = RunFolder(Path(run_dir))
    extra = list(overrides) + ([f"device={device}"] if device else [])
    if dataset is None:
        if create and (not run.exists() or config_file is not None):
            config = resolve_config(preset or "demo", config_file, extra)
            save = True
        else:
            config = apply_overrides(run.load_config(), extra)
        if save and is_main_process():
            run.root.mkdir(parents=True, exist_ok=True)
            run.save_config(config)
        return run, config
    if not run.exists():
        config = resolve_config(preset or "demo", config_file, extra)
    else:
        previous = run.load_config()
        if preset is not None and preset not in PRESET_NAMES:
            raise InputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESET_NAMES)}")
        if preset is not None and preset != previous.preset:
            raise InputError(f"--preset {preset}: this run folder was made with preset {previous.preset}; "
                             "use a new --run folder, or --set to change single settings", run.root)
        check_same_dataset(run, dataset)
        config = resolve_config(previous.preset, config_file, extra, base=previous.model_dump(mode="json"))
    ingest_dataset(dataset, run, config, require_label=False)  # register works without labels (body mask)
    run.save_config(config)
    return run, config


# --- previews: one figure per input case ----------------------------------------------------------
def write_previews(run: RunFolder, config: Config) -> int:
    """``previews/<case>.png``: the phases side by side with the label contour; returns the count."""
    from diff4mmlits.figures import plot_case_preview

    if not config.preview.enabled:
        return 0
    cases = run.read_input_cases()
    for case in progress(cases, desc="previews", unit="case"):
        plot_case_preview(case, run.previews_dir / f"{case.case_id}.png", window_hu=config.preview.window_hu)
    return len(cases)


def section_dataset(run: RunFolder, report_dir: Path) -> str:
    """The dataset: cases, phases, geometry, label volumes and split; then the preview figures."""
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
    name = Path(manifest["dataset"]).name  # not the absolute path: the report travels
    page = f"<h2>Dataset</h2><p class='muted'>{html.escape(name)} ({manifest['layout']} layout)</p>{table}"
    figures = sorted(run.previews_dir.glob("*.png"))
    if figures:
        body = "".join(figure_html(path, report_dir, path.stem) for path in figures)
        page += ("\n<h2>Cases</h2><p class='muted'>Each phase at the slice with most tumor; the label (drawn on the "
                 f"annotated phase) as contours: liver green, tumor red.</p>{body}")
    return page


STAGES: list[Stage] = [
    Stage("previews", "a preview figure per input case (previews/)", write_previews, ("preview",), (),
          report=section_dataset),
]


def refuse_run_in_dataset(dataset: str | Path, run: RunFolder) -> None:
    """Stop before anything is written when the run folder is the dataset or lies inside it: the run's
    files would land among the cases, and the dataset's reader would take them for cases."""
    refuse_output_in_input(dataset, run.root, "the run folder's files", names=("--run", "DATASET"))
