"""The phantom on disk: the native dataset layout, plus the truth in ``_truth/``.

::

    OUT/<case>/{NC,AP,PVP,DP}.nii.gz, label.nii.gz          what any dataset holds (label on PVP)
    OUT/healthy_NNN/…                                        with ``healthy``: tumor-free scans, liver label only
    OUT/_truth/phantom.json                                  seed, site, size, cases, tissue ids
    OUT/_truth/<case>/<PHASE>_label.nii.gz                    label on that phase's grid
    OUT/_truth/<case>/<PHASE>_tumor_free.nii.gz               the phase without tumors (same noise)
    OUT/_truth/<case>/<PHASE>_displacement.nii.gz             ITK displacement field on the PVP grid
    OUT/_truth/<case>/tissues.nii.gz                          tissue map on the PVP grid
    OUT/_truth/<case>/tumors.json, parameters.json

The dataset is written whole or not at all, and the same ``(seed, site, size)`` gives byte-identical files.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import MappingProxyType

from diff4mmlits import PHASES
from diff4mmlits.data.io import read_displacement_field, read_volume, write_displacement_field, write_volume
from diff4mmlits.data.native import write_case_folder
from diff4mmlits.data.phantom.anatomy import TISSUES
from diff4mmlits.data.phantom.generate import (
    HEALTHY_PATIENT_OFFSET,
    PhantomCase,
    PhantomTruth,
    check_phantom_arguments,
    make_healthy_case,
    make_phantom_case,
)
from diff4mmlits.errors import InputError
from diff4mmlits.files import named_as_final, write_json_atomic
from diff4mmlits.progress import progress

TRUTH_FOLDER = "_truth"


def write_phantom_case(phantom: PhantomCase, out: str | Path) -> Path:
    """Write one phantom case into dataset folder ``out`` (case folder and its ``_truth/`` folder)."""
    out = Path(out)
    case, truth = phantom.case, phantom.truth
    write_case_folder(case, out / case.case_id)
    folder = out / TRUTH_FOLDER / case.case_id
    pvp = case.annotated
    for phase in PHASES:
        write_volume(truth.phase_labels[phase], folder / f"{phase}_label.nii.gz")
        write_volume(truth.tumor_free[phase], folder / f"{phase}_tumor_free.nii.gz")
        write_displacement_field(truth.displacement_mm[phase], pvp, folder / f"{phase}_displacement.nii.gz")
    write_volume(truth.tissues, folder / "tissues.nii.gz")
    write_json_atomic(folder / "tumors.json", truth.tumors)
    write_json_atomic(folder / "parameters.json", truth.parameters)
    return folder


def _make_and_write(out: Path, index: int, seed: int, site: str, size: int, patients: str | None = None,
                    healthy: bool = False, slice_mm: float | None = None) -> str:
    if healthy:
        phantom = make_healthy_case(index, seed=seed, site=site, size=size, slice_mm=slice_mm)
    else:
        phantom = make_phantom_case(index, seed=seed, site=site, size=size, patients=patients, slice_mm=slice_mm)
    write_phantom_case(phantom, out)
    return phantom.case.case_id


def write_phantom_dataset(out: str | Path, cases: int, seed: int, site: str = "default", size: int = 64,
                          workers: int = 1, patients: str | None = None, healthy: int = 0,
                          slice_mm: float | None = None) -> Path:
    """Generate ``cases`` phantom cases (``case_000``…) and ``healthy`` healthy scans (``healthy_000``…,
    :func:`~diff4mmlits.data.phantom.generate.make_healthy_case`) into ``out``; returns ``out``.

    Args:
        out: dataset folder, new or empty (the dataset is written into ``.<out>.tmp`` beside it and
            renamed into place when whole).
        cases: number of cases (≥ 1). Case ``i`` depends only on ``(seed, i, site, size, patients)``.
        seed: the dataset seed.
        site: ``"default"``, ``"second"`` or ``"third"``.
        size: in-plane voxels of each case.
        workers: processes generating cases in parallel (1: in this process).
        patients: scan this site's patients with ``site``'s scanner (the same patients at another
            site, generate.py); None: ``site``'s own.
        healthy: tumor-free scans of other patients, labelled liver only (``data.healthy_cases``).
        slice_mm: slice spacing in mm whatever ``size``; None: the site's (it scales with the pixel).

    Raises:
        InputError: ``out`` is a file or a folder that is not empty, ``cases`` or ``workers`` below 1, a bad ``site``/``size``/``patients``,
            or healthy scans beside more than ``HEALTHY_PATIENT_OFFSET`` cases, or ``slice_mm`` not positive.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a folder; choose another output folder", out)
    if cases < 1:
        raise InputError(f"--cases {cases}: generate at least one case")
    if workers < 1:
        raise InputError(f"--workers {workers}: use at least one worker")
    if healthy < 0:
        raise InputError(f"--healthy {healthy}: give 0 or more healthy scans")
    if healthy and cases > HEALTHY_PATIENT_OFFSET:
        raise InputError(f"--cases {cases} with --healthy: at most {HEALTHY_PATIENT_OFFSET} cases (the healthy "
                         f"scans are patients {HEALTHY_PATIENT_OFFSET}…, which more cases would repeat)")
    check_phantom_arguments(0, seed, site, size, patients, slice_mm)
    if out.is_dir() and any(out.iterdir()):
        raise InputError("is not empty; give a new folder (or delete this one to write the phantom again)", out)
    # the whole dataset is written beside ``out`` and renamed into place: a full disk or Ctrl-C leaves no
    # half-written dataset (a case without a phase) for validate and register to take for a whole one
    final, out = out, out.parent / f".{out.name}.tmp"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    try:
        with named_as_final(out, final):
            _write_cases(out, cases, healthy, seed, site, size, patients, workers, slice_mm)
        os.replace(out, final)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return final


def _write_cases(out: Path, cases: int, healthy: int, seed: int, site: str, size: int, patients: str | None,
                 workers: int, slice_mm: float | None = None) -> None:
    """The cases, their truth and ``_truth/phantom.json`` into ``out``."""
    bar = progress(total=cases + healthy, desc="phantom", unit="case")
    case_ids = []
    todo = [(index, False) for index in range(cases)] + [(index, True) for index in range(healthy)]
    if workers == 1:
        for index, is_healthy in todo:
            case_ids.append(_make_and_write(out, index, seed, site, size, patients, is_healthy, slice_mm))
            bar.update(1)
    else:
        pool = ProcessPoolExecutor(max_workers=workers)
        try:
            jobs = [pool.submit(_make_and_write, out, index, seed, site, size, patients, is_healthy, slice_mm)
                    for index, is_healthy in todo]
            for job in jobs:
                case_ids.append(job.result())
                bar.update(1)
        finally:
            # Ctrl-C or an error: the cases not started are dropped explicitly (a case is written whole
            # or not at all), whatever the executor would otherwise do with its pending queue
            pool.shutdown(wait=True, cancel_futures=True)
    bar.close()
    write_json_atomic(out / TRUTH_FOLDER / "phantom.json", {
        "seed": seed, "site": site, "size": size, "cases": case_ids,
        **({"patients": patients} if patients else {}),
        **({"slice_mm": slice_mm} if slice_mm is not None else {}),
        "tissues": {str(tissue_id): name for tissue_id, name in TISSUES.items()},
        "displacement_convention": "ITK: the anatomy at PVP point p lies at p + d(p) in the phase; mm",
    })


def read_phantom_truth(dataset: str | Path, case_id: str) -> PhantomTruth:
    """Read the truth of one case written by :func:`write_phantom_dataset`.

    Raises:
        InputError: the dataset has no ``_truth/<case_id>`` folder or a truth file is missing.
    """
    folder = Path(dataset) / TRUTH_FOLDER / case_id
    if not folder.is_dir():
        raise InputError(f"no phantom truth for {case_id!r} (expected {folder}); was it written by 'diff4mmlits phantom'?", dataset)
    labels, tumor_free, displacement = {}, {}, {}
    for phase in PHASES:
        labels[phase] = read_volume(folder / f"{phase}_label.nii.gz", kind="label")
        tumor_free[phase] = read_volume(folder / f"{phase}_tumor_free.nii.gz")
        displacement[phase] = read_displacement_field(folder / f"{phase}_displacement.nii.gz")[0]
    return PhantomTruth(
        phase_labels=MappingProxyType(labels),
        tumor_free=MappingProxyType(tumor_free),
        displacement_mm=MappingProxyType(displacement),
        tumors=_read_json(folder / "tumors.json"),
        tissues=read_volume(folder / "tissues.nii.gz", kind="label"),
        parameters=_read_json(folder / "parameters.json"),
    )


def _read_json(path: Path):
    if not path.is_file():
        raise InputError("phantom truth file missing; re-run 'diff4mmlits phantom'", path)
    return json.loads(path.read_text())

