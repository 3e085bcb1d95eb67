"""What ``diff4mmlits predict`` reads and writes, as a TotalSegmentator user expects.

Input: a case folder (``PVP.nii.gz``, ``AP.nii.gz``…), a dataset of any layout, a single image file
(read as the annotated phase), a DICOM series folder (likewise) or a folder of single scans (image
files whose names are no phase names and no case folders: each file one case, as the annotated phase). Any subset of the phases is
accepted: the reference grid is the annotated phase when present, else the present phase nearest
to it in contrast timing, and the output says which. Label files beside the images are not read
(predict needs none, and a label with other values must not stop it).

Output: a folder of ``<case>.nii.gz``, or a single file when the output path ends in ``.nii.gz``
or ``.nii`` (one case only); with statistics, ``<case>.statistics.json`` beside each label and one
``statistics.csv`` (a row per lesion).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from diff4mmlits import PHASES
from diff4mmlits.data.case import Case
from diff4mmlits.data.casefiles import CaseFiles, checked_image, read_case_files, read_checked_image
from diff4mmlits.data.checks import check_image_values
from diff4mmlits.data.dataset import list_case_files
from diff4mmlits.data.io import holds_dicom_series, read_dicom_series, strip_extension, volume_extension
from diff4mmlits.data.native import LABEL_ALIASES, canonical_phase_name, scan_case_folder
from diff4mmlits.data.volume import Volume
from diff4mmlits.errors import InputError
from diff4mmlits.files import write_bytes_atomic, write_json_atomic

log = logging.getLogger(__name__)

TYPICAL_DELAY_S = {"NC": 0.0, "AP": 35.0, "PVP": 70.0, "DP": 180.0}
"""Typical acquisition time after contrast injection (s): which present phase is nearest the missing one."""
OUTPUT_SUFFIXES = {"nifti": (".nii.gz", ".nii"), "dicom-seg": (".dcm",)}
"""Per ``--output-type``: the file endings that make OUTPUT one file (the first names each case's file)."""


def reference_phase(present: Sequence[str], annotated_phase: str) -> str:
    """The annotated phase when present, else the present phase nearest to it in contrast timing."""
    if annotated_phase in present:
        return annotated_phase
    if not present:
        raise InputError("no phase image found")
    target = TYPICAL_DELAY_S.get(annotated_phase, 70.0)
    return min(present, key=lambda name: (abs(TYPICAL_DELAY_S.get(name, 1e9) - target), PHASES.index(name) if name in PHASES else 9))


def is_dicom_series_folder(path: Path) -> bool:
    """A folder whose files hold a DICOM series (and no phase files of a case folder)."""
    if not path.is_dir() or any(volume_extension(p) for p in path.iterdir() if p.is_file()):
        return False
    return holds_dicom_series(path)


def read_prediction_inputs(path: str | Path, annotated_phase: str = "PVP") -> list[Case]:
    """The cases under ``path`` (see the module doc), unregistered, without labels; a phase that does
    not look like CT in HU (no voxel below 0 HU: the rescale intercept not applied) is warned about."""
    cases = _read_prediction_inputs(Path(path), annotated_phase)
    for case in cases:
        for name, volume in case.phases.items():
            for problem in check_image_values(volume, f"{case.case_id}/{name}"):
                log.warning("%s: %s", problem.path, problem.message)  # the errors were raised on reading
    return cases


def _read_prediction_inputs(path: Path, annotated_phase: str) -> list[Case]:
    path = Path(path)
    if not path.exists():
        raise InputError("input not found; give an image file, a DICOM series folder, a case folder or a dataset", path)
    if path.is_file():
        if volume_extension(path) is None:
            raise InputError("not an image file diff4mmlits reads (.nii.gz, .nii, .nrrd, .mha, .mhd); give an image, "
                             "a DICOM series folder, a case folder or a dataset", path)
        return [_single_image_case(path, annotated_phase)]
    if is_dicom_series_folder(path):
        log.info("%s: a DICOM series, read as phase %s", path.name, annotated_phase)
        return [Case(path.name, {annotated_phase: checked_image(read_dicom_series(path), path)}, None, annotated_phase)]
    listing = scan_case_folder(path)
    if not listing.phases:
        scans = single_scans(path)
        if scans:
            log.info("%s: %d image file(s) named by case, not by phase: each read as one case's %s", path.name,
                     len(scans), annotated_phase)
            return [Case(strip_extension(p.name), {annotated_phase: read_checked_image(p)}, None, annotated_phase)
                    for p in scans]
    files = [listing] if listing.phases else list_case_files(path, require_label=False, annotated_phase=annotated_phase)
    return [_read_images(f, annotated_phase) for f in files]


def _single_image_case(path: Path, annotated_phase: str) -> Case:
    """One image file as a case: a file named by phase (``case_007/AP.nii.gz``) is that phase of the
    case its folder names (``case_007``: the label is ``case_007.nii.gz``, not ``AP.nii.gz``, which
    every case of a loop over ``*/PVP.nii.gz`` would overwrite); any other name is the case, read as
    the annotated phase."""
    phase = canonical_phase_name(strip_extension(path.name))
    case_id = (path.absolute().parent.name if phase else "") or strip_extension(path.name)  # not resolve(): a
    # symlinked file (git-annex, DVC) would be named after its store folder
    phase = phase or annotated_phase
    log.info("%s: one image, read as phase %s of case %s", path.name, phase, case_id)
    return Case(case_id, {phase: read_checked_image(path)}, None, phase)


def single_scans(folder: Path) -> list[Path]:
    """The image files of a folder of single scans (``scan_01.nii.gz``, ``scan_02.nii.gz``… as
    TotalSegmentator users keep them), or ``[]`` when ``folder`` is anything else: a folder with
    subfolders (a dataset), a LiTS or nnU-Net layout, or files named by phase or as labels."""
    from diff4mmlits.data.dataset import detect_layout

    entries = [p for p in folder.iterdir() if not p.name.startswith((".", "_"))]
    images = sorted(p for p in entries if p.is_file() and volume_extension(p))
    if not images or any(p.is_dir() for p in entries) or detect_layout(folder) != "native":
        return []
    names = [strip_extension(p.name) for p in images]
    if any(canonical_phase_name(n) or n.lower() in LABEL_ALIASES for n in names):
        return []
    labels = [p for p in images if _is_label_file(p)]
    if labels:  # example_seg.nii.gz beside example_ct.nii.gz: a label map, not a scan
        log.info("%s: not read as scans (named as labels): %s", folder.name, ", ".join(p.name for p in labels))
    scans = [p for p in images if p not in labels]
    by_case: dict[str, list[str]] = {}
    for scan in scans:
        by_case.setdefault(strip_extension(scan.name), []).append(scan.name)
    for case_id, files in by_case.items():
        if len(files) > 1:  # p1.nii and p1.nii.gz would both write p1.nii.gz, the second over the first
            raise InputError(f"scan {case_id} is given {len(files)} times ({', '.join(files)}); keep one file per "
                             "scan", folder)
    return scans


def _read_images(files: CaseFiles, annotated_phase: str) -> Case:
    reference = reference_phase(sorted(files.phases), annotated_phase) if files.phases else annotated_phase
    if reference != annotated_phase:
        log.warning("%s: no %s image; the labels go on the %s grid (the nearest phase in contrast timing)",
                    files.case_id, annotated_phase, reference)
    images_only = dataclasses.replace(files, label=None, label_ids=None, extras={},
                                      issues=tuple(i for i in files.issues if not _is_label_file(i[0])))
    return read_case_files(images_only, annotated_phase=reference, require_label=False)


def _is_label_file(path: Path) -> bool:
    """A label file (``label.nii.gz``, ``seg.nrrd``, ``PVP_seg.nii.gz``, ``example_seg.nii.gz``…):
    predict reads none, so its problems do not stop it."""
    stem = strip_extension(path.name).lower()
    return stem in LABEL_ALIASES or re.split(r"[_\-.]", stem)[-1] in LABEL_ALIASES


# --- output ---------------------------------------------------------------------------------------
def single_file_output(output: str | Path, output_type: str = "nifti") -> bool:
    """Whether ``output`` names one label file (``.nii.gz``/``.nii``, or ``.dcm``) rather than a folder."""
    return str(output).lower().endswith(OUTPUT_SUFFIXES[output_type])


def label_paths(case_ids: Sequence[str], output: str | Path, output_type: str = "nifti") -> dict[str, Path]:
    """Where each case's label goes: ``output`` itself for one case and a file name, else
    ``output/<case>.nii.gz`` (``.dcm`` for DICOM-SEG)."""
    output = Path(output)
    if single_file_output(output, output_type):
        if len(case_ids) != 1:
            raise InputError(f"the output is one file but the input holds {len(case_ids)} cases; give an output folder",
                             output)
        return {case_ids[0]: output}
    other = volume_extension(output) or (".dcm" if output.name.lower().endswith(".dcm") else None)
    if other is not None and not output.is_dir():  # seg.nrrd became a folder named seg.nrrd, "labels in seg.nrrd"
        written = " or ".join(OUTPUT_SUFFIXES[output_type])
        raise InputError(f"names a {other} file, but --output-type {output_type} writes {written}; name the "
                         f"output so, or give a folder", output)
    if output.is_file():
        raise InputError("is a file; give a folder for the labels (or a .nii.gz file name for one case)", output)
    suffix = OUTPUT_SUFFIXES[output_type][0]
    return {case_id: output / f"{case_id}{suffix}" for case_id in case_ids}


# --- out of domain -------------------------------------------------------------------------------
VOLUME_FACTOR = 2.0
"""A predicted liver this many times larger or smaller than any training liver is out of domain."""
HU_MARGIN = 40.0
"""A phase's median liver HU this far (HU) outside the training cases' range is out of domain."""


def out_of_domain(label: Volume, phases: Mapping[str, Volume], training: Mapping[str, Any]) -> list[str]:
    """Why a prediction looks unlike the training data (``config.json``'s ``training_livers``):
    the predicted liver's volume or a phase's median liver HU far outside the training cases'."""
    reasons: list[str] = []
    liver = label.array >= 1
    if not training:
        return []  # a model trained before the ranges were recorded
    if not liver.any():
        return ["no liver found"]
    low, high = training.get("volume_ml", [0.0, float("inf")])
    volume = float(liver.sum()) * float(np.prod(label.spacing_mm)) / 1000.0
    if volume > VOLUME_FACTOR * high or volume < low / VOLUME_FACTOR:
        reasons.append(f"liver {volume:.0f} mL where the training livers were {low:.0f}–{high:.0f} mL")
    for name, (lo, hi) in training.get("median_hu", {}).items():
        volume_hu = phases.get(name)
        if volume_hu is None or volume_hu.shape != label.shape or not (label.array == 1).any():
            continue
        median = float(np.median(volume_hu.array[label.array == 1]))
        if median < lo - HU_MARGIN or median > hi + HU_MARGIN:
            reasons.append(f"{name} liver median {median:.0f} HU where training had {lo:.0f}–{hi:.0f} HU")
    return reasons


def missing_phases_note(present: Sequence[str], model_phases: Sequence[str], phase_dropout_prob: float) -> str | None:
    """A warning when a study lacks phases the model reads and the model never saw a study like that
    (trained with ``segment.phase_dropout_prob`` 0); ``None`` otherwise. On the phantom, PVP alone
    gave such a model 6.5 % tumor Dice per case against 13.7 % trained with phase dropout (docs/segment.md)."""
    given = set(present)
    missing = [name for name in model_phases if name not in given]
    if not missing or phase_dropout_prob > 0:
        return None
    return (f"{', '.join(missing)} missing (filled by duplicating the nearest phase), and this model was trained "
            "without phase dropout (segment.phase_dropout_prob 0): it never saw a study like this, expect a much "
            "lower tumor Dice; re-train with phase dropout, or with --phases set to the phases you have")


# --- statistics -----------------------------------------------------------------------------------
def label_statistics(label: Volume, phases: Mapping[str, Volume]) -> dict[str, Any]:
    """Liver and tumor volumes (mL), lesion count, and per lesion its volume (mL), centre (world mm,
    x y z) and mean HU in each phase. ``phases`` on the label's grid (registered)."""
    voxel_ml = float(np.prod(label.spacing_mm)) / 1000.0
    array = label.array
    lesions, count = ndimage.label(array == 2, structure=np.ones((3, 3, 3)))
    rows = []
    for index in range(1, count + 1):
        mask = lesions == index
        centre = np.argwhere(mask).mean(0)
        world = np.asarray(label.origin_mm) + np.asarray(label.direction) @ (centre * np.asarray(label.spacing_mm))
        rows.append({
            "lesion": index,
            "volume_ml": round(float(mask.sum()) * voxel_ml, 3),
            "centre_mm_xyz": [round(float(v), 2) for v in world[::-1]],
            "mean_hu": {name: round(float(v.array[mask].mean()), 1) for name, v in sorted(phases.items(), key=_phase_order)
                        if v.shape == label.shape},
        })
    rows.sort(key=lambda r: -r["volume_ml"])
    liver = array >= 1
    return {
        "liver_volume_ml": round(float(liver.sum()) * voxel_ml, 3),
        "tumor_volume_ml": round(float((array == 2).sum()) * voxel_ml, 3),
        "tumor_burden_percent": round(100.0 * float((array == 2).sum()) / max(int(liver.sum()), 1), 2),
        "lesions": len(rows),
        "liver_mean_hu": {name: round(float(v.array[array == 1].mean()), 1) for name, v in sorted(phases.items(), key=_phase_order)
                          if v.shape == label.shape and (array == 1).any()},
        "lesion_list": rows,
    }


def _phase_order(item: tuple[str, Any]) -> int:
    return PHASES.index(item[0]) if item[0] in PHASES else len(PHASES)


def statistics_path(label_file: Path) -> Path:
    """``<label>.statistics.json`` beside a label file (``.nii.gz``, ``.nii`` or ``.dcm``)."""
    return label_file.parent / f"{strip_extension(label_file.name).removesuffix('.dcm')}.statistics.json"


def write_statistics(statistics: Mapping[str, Mapping[str, Any]], label_files: Mapping[str, Path]) -> Path:
    """``<label>.statistics.json`` per case and ``statistics.csv`` (a row per lesion; a case without
    lesions gets one row with lesion 0) beside the labels; returns the CSV's path."""
    for case_id, stats in statistics.items():
        label_file = label_files[case_id]
        write_json_atomic(statistics_path(label_file), {"case": case_id, **stats})
    folder = next(iter(label_files.values())).parent
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["case", "liver_volume_ml", "tumor_volume_ml", "lesion", "lesion_volume_ml", "x_mm", "y_mm", "z_mm",
                     *[f"mean_hu_{p}" for p in PHASES]])
    for case_id, stats in statistics.items():
        lesions = stats["lesion_list"] or [{"lesion": 0, "volume_ml": 0.0, "centre_mm_xyz": ["", "", ""], "mean_hu": {}}]
        for lesion in lesions:
            writer.writerow([case_id, stats["liver_volume_ml"], stats["tumor_volume_ml"], lesion["lesion"],
                             lesion["volume_ml"], *lesion["centre_mm_xyz"], *[lesion["mean_hu"].get(p, "") for p in PHASES]])
    return write_bytes_atomic(folder / "statistics.csv", buffer.getvalue().encode())
