"""The register stage over a run folder: read cases, register them (in parallel), write files.

```
RUN/registered/<case>/
  <PHASE>.nii.gz   every phase present, on the annotated grid (the annotated phase copied unchanged)
  label.nii.gz     the annotated label, unchanged
  <PHASE>.tfm      ITK transform (annotated-grid points → phase points, mm): SimpleITK.ReadTransform,
                   3D Slicer and ITK-SNAP load it; sitk.Resample(phase, pvp, tfm) gives <PHASE>.nii.gz
  qc.json          similarity and Dice before/after per phase, fallbacks, run time (written last)
  qc.png           per phase, axial and coronal slices before and after with the liver contour
```
A case whose ``qc.json`` records the same inputs and settings is up to date and skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from tqdm.contrib.logging import logging_redirect_tqdm

from diff4mmlits.config import Config
from diff4mmlits.data.case import ANNOTATED_PHASE, Case
from diff4mmlits.data.casefiles import CaseFiles, read_case_files
from diff4mmlits.data.dataset import list_case_files
from diff4mmlits.data.volume import Volume
from diff4mmlits.distributed import shard as take_shard
from diff4mmlits.errors import InputError, StorageError
from diff4mmlits.files import atomic_path, free_space_note
from diff4mmlits.progress import progress
from diff4mmlits.register.backends import require_backend
from diff4mmlits.register.case import RegisteredCase, register_case
from diff4mmlits.register.config import RegisterConfig
from diff4mmlits.register.qc import QC_JSON, QC_PNG, plot_registration_qc, read_qc
from diff4mmlits.register.report import section_registration
from diff4mmlits.register.workers import run_in_processes
from diff4mmlits.runfolder import RunFolder, annotated_phase_parts, fingerprint_of, write_case_atomically
from diff4mmlits.stage import Stage
from diff4mmlits.threads import available_memory_bytes, worker_processes

log = logging.getLogger(__name__)

TRANSFORM_SUFFIX = ".tfm"
FIELD_TRANSFORM_SUFFIX = ".h5"
"""Transforms holding a displacement field (``--method convexadam``) are written as binary HDF5 ITK
files (a text ``.tfm`` would be ~2.5× larger and slow to read); 3D Slicer and SimpleITK read both."""


def transform_suffix(transform: sitk.Transform) -> str:
    """``.h5`` when ``transform`` holds a displacement field, else ``.tfm``."""
    parts = [transform]
    if transform.GetName() == "CompositeTransform":
        composite = sitk.CompositeTransform(transform)
        parts = [composite.GetNthTransform(i) for i in range(composite.GetNumberOfTransforms())]
    fields = any(part.GetName().startswith("DisplacementFieldTransform") for part in parts)
    return FIELD_TRANSFORM_SUFFIX if fields else TRANSFORM_SUFFIX


ROUND_TRIP_TOLERANCE_MM = 1e-6
"""A written transform, read back, must map points to within this distance of the original (mm)."""


# --- one case's files ----------------------------------------------------------------------
def write_transform(transform: sitk.Transform, path: str | Path) -> Path:
    """Write an ITK transform file atomically (``.tfm`` text, or ``.h5`` by extension)."""
    with atomic_path(path) as tmp:
        try:
            sitk.WriteTransform(transform, str(tmp))
            sitk.ReadTransform(str(tmp))  # what is on disk reads back (ITK writers do not report a full disk)
        except RuntimeError:
            raise StorageError(f"the transform could not be written whole{free_space_note(path)}; free some space "
                               "and rerun", path) from None
    return Path(path)


def read_transform(path: str | Path) -> sitk.Transform:
    """Read an ITK transform file; a missing or unreadable file is an :class:`InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError("transform file not found; run 'diff4mmlits register' first", path)
    try:
        return sitk.ReadTransform(str(path))
    except RuntimeError:
        raise InputError("cannot be read as an ITK transform file; re-run 'diff4mmlits register'", path) from None


def check_transform_round_trip(path: Path, transform: sitk.Transform, reference: Volume) -> float:
    """Read ``path`` back and map points spread over ``reference``'s grid with it and with ``transform``.

    Returns the largest distance (mm) between the two mappings. Raises a ``RuntimeError`` (a bug,
    not bad input) when the file does not reproduce the transform: resampling through the file would
    then not reproduce the written phase.
    """
    again = read_transform(path)
    rng = np.random.default_rng(0)
    index = rng.uniform(0, np.asarray(reference.shape) - 1, size=(200, 3))
    points = reference.index_to_world(index)[:, ::-1]  # (x, y, z) for ITK
    error = max(float(np.linalg.norm(np.subtract(again.TransformPoint(tuple(p)), transform.TransformPoint(tuple(p)))))
                for p in points)
    if not error <= ROUND_TRIP_TOLERANCE_MM:
        raise RuntimeError(f"{path}: the transform read back maps points up to {error:.3g} mm away from the original")
    return error


def write_registered_case(result: RegisteredCase, original: Case, folder: str | Path, fingerprint: str = "",
                          figure: bool = True) -> Path:
    """Write one registered case folder as a whole (a temporary folder renamed into place), ``qc.json`` last.

    Each transform file is read back and checked against the transform it was written from.
    """
    def write_transforms(tmp: Path) -> None:
        for name, transform in result.transforms.items():
            path = write_transform(transform, tmp / f"{name}{transform_suffix(transform)}")
            check_transform_round_trip(path, transform, original.annotated)

    def write_figure(tmp: Path) -> None:
        plot_registration_qc(original, result.case, tmp / QC_PNG, roi=result.roi.mask.array > 0)

    writers = [write_transforms, write_figure] if figure else [write_transforms]
    return write_case_atomically(result.case, Path(folder), {QC_JSON: {**result.qc, "fingerprint": fingerprint}},
                                 writers, last_file=QC_JSON)


# --- the stage -----------------------------------------------------------------------------
@dataclass(frozen=True)
class CaseJob:
    """What a worker needs for one case: where to read it, where to write it, the settings."""

    case_id: str
    source: CaseFiles
    """Where the case's files are, in any layout (read in the worker)."""
    out_dir: Path
    config: RegisterConfig
    annotated_phase: str
    truth_dataset: Path | None
    """The phantom dataset whose ``_truth/`` holds per-phase labels (for Dice in qc.json)."""
    fingerprint: str
    figure: bool


def case_fingerprint(config: RegisterConfig, manifest_entry: Mapping[str, Any] | None,
                     annotated_phase: str = ANNOTATED_PHASE) -> str:
    """What a case's registration depends on: the ``register`` settings, the input checksums and the
    phase the others are registered onto."""
    return fingerprint_of("register", config.model_dump(mode="json"), manifest_entry, *annotated_phase_parts(annotated_phase))


WORKER_MEMORY_GIB = 3.0
"""Memory set aside per case process: ``predict`` on a 512 × 512 × ~97 four-phase case, registration
included, peaks at 2.3 GB (docs/register.md)."""


def default_workers(limit: int = 4) -> int:
    """Processes for ``workers: 0``: the thread budget (:mod:`diff4mmlits.threads`: the cores this
    process may use, less those other processes keep busy), at most ``limit`` — or more where the
    available memory holds more cases at :data:`WORKER_MEMORY_GIB` each (on a 16-core, 128 GB GPU
    machine four processes left the fifth of five clinical-size cases to run alone, 188 s in all)."""
    available = available_memory_bytes()
    if available is not None:
        limit = max(limit, int(available / (WORKER_MEMORY_GIB * 2**30)))
    return worker_processes(limit=limit)


def register_run(run: RunFolder, config: Config, shard: tuple[int, int] = (1, 1), workers: int | None = None,
                 force_cases: bool = False) -> list[dict[str, Any]]:
    """Register the run's cases (one shard of them) into ``RUN/registered/``; return one summary per case.

    Cases run in ``workers`` processes (default ``config.workers``; 0: :func:`default_workers`), each
    with one SimpleITK thread. Up-to-date cases are skipped unless ``force_cases``.
    """
    require_backend(config.register.method)  # one clear line before any work when elastix/convexadam is absent
    manifest = run.load_manifest()
    entries = {entry["id"]: entry for entry in manifest["cases"]}
    jobs = take_shard(_case_jobs(run, config, entries), *shard)
    todo = []
    summaries: list[dict[str, Any]] = []
    for job in jobs:
        qc = read_qc(job.out_dir)
        if not force_cases and qc is not None and qc.get("fingerprint") == job.fingerprint:
            summaries.append({"case": job.case_id, "skipped": True})
        else:
            todo.append(job)
    workers = int(workers if workers is not None else config.workers) or default_workers()
    if todo:
        log.info("register: %d case(s) with method %s on %d worker(s)%s", len(todo), config.register.method,
                 min(workers, len(todo)), f" ({len(jobs) - len(todo)} up to date)" if len(jobs) > len(todo) else "")
    bar = progress(total=len(todo), desc="register", unit="case")
    try:
        with logging_redirect_tqdm(loggers=[logging.getLogger("diff4mmlits")]):  # warnings above the bar
            if workers == 1 or len(todo) <= 1:
                for job in todo:  # one case: its phases in worker processes instead
                    summaries.append(register_job(job, phase_workers=workers if len(todo) == 1 else 1))
                    bar.update(1)
            else:
                summaries += run_in_processes(register_job, todo, workers, on_done=lambda *_: bar.update(1))
    finally:
        bar.close()
    return summaries


def register_job(job: CaseJob, phase_workers: int = 1) -> dict[str, Any]:
    """Read, register and write one case (in a worker process, or here with its phases in
    ``phase_workers`` processes); return a short summary."""
    cpu_start = time.process_time()
    case = read_case_files(job.source, annotated_phase=job.annotated_phase, require_label=False)
    truth = _truth_labels(job.truth_dataset, job.case_id)
    result = register_case(case, job.config, truth_labels=truth, workers=phase_workers)
    write_registered_case(result, case, job.out_dir, fingerprint=job.fingerprint, figure=job.figure)
    phases = result.qc["phases"]
    return {
        "case": job.case_id,
        "seconds": result.qc["seconds"],
        "fallbacks": {name: entry["fallback"] for name, entry in phases.items() if entry.get("fallback")},
        "missing": [name for name, entry in phases.items() if entry["status"] == "missing"],
        "cpu_seconds": time.process_time() - cpu_start,
    }


def _case_jobs(run: RunFolder, config: Config, entries: Mapping[str, Any]) -> list[CaseJob]:
    """One job per case of the dataset, sorted by case id."""
    dataset = run.dataset_path()
    truth_dataset = dataset if (dataset / "_truth").is_dir() else None
    annotated = config.data.annotated_phase
    return [
        CaseJob(files.case_id, files, run.registered_dir / files.case_id, config.register, annotated,
                truth_dataset, case_fingerprint(config.register, entries.get(files.case_id), annotated), config.preview.enabled)
        for files in sorted(list_case_files(dataset, require_label=False, annotated_phase=annotated), key=lambda f: f.case_id)
    ]


def _truth_labels(dataset: Path | None, case_id: str) -> dict[str, Volume] | None:
    """The phantom's per-phase labels of a case, when the dataset carries its truth."""
    if dataset is None or not (dataset / "_truth" / case_id).exists():
        return None
    from diff4mmlits.data.phantom import read_phantom_truth

    return dict(read_phantom_truth(dataset, case_id).phase_labels)


def every_case_registered(run: RunFolder, config: Config) -> bool:
    """Every case of the dataset has a complete ``registered/<case>/`` made with these settings
    (what a sharded ``register`` checks before it stamps the stage)."""
    entries = {entry["id"]: entry for entry in run.load_manifest()["cases"]}
    phase = config.data.annotated_phase
    return all((read_qc(run.registered_dir / case_id) or {}).get("fingerprint") == case_fingerprint(config.register, entry, phase)
               for case_id, entry in entries.items())


STAGES: list[Stage] = [
    Stage("register", "every phase registered onto the annotated phase (registered/)", register_run,
          ("register",), (), report=section_registration, is_complete=every_case_registered, command="register DATASET"),
]
