"""LiTS and MSD Task03 (Liver) datasets: single-phase CT, imported as PVP-only cases.

- LiTS: ``volume-N.nii`` + ``segmentation-N.nii`` (also ``.nii.gz``), at the top level or one
  folder down (``Training Batch 1/``…); ``test-volume-N.nii`` are unlabelled test cases. Case ids
  are ``lits_NNN`` (``lits_test_NNN``).
- MSD Task03: ``imagesTr/liver_N.nii.gz`` + ``labelsTr/liver_N.nii.gz``, ``imagesTs/`` unlabelled.
  Case ids are the file names (``liver_N``).

Both number the classes as we do: 0 background, 1 liver, 2 tumor. Unlabelled test cases are
listed only when ``require_label`` is False. The single phase is the portal venous phase of the
native layout (LiTS scans are mostly portal venous), i.e. the annotated phase.
"""

from __future__ import annotations

import re
from pathlib import Path

from diff4mmlits.data.case import ANNOTATED_PHASE, Case
from diff4mmlits.data.casefiles import CaseFiles, read_case_files
from diff4mmlits.data.io import strip_extension, volume_extension
from diff4mmlits.errors import InputError

_LITS_FILE = re.compile(r"^(?P<kind>test-volume|volume|segmentation)-(?P<number>\d+)$")


def is_lits_dataset(dataset: Path) -> bool:
    """LiTS files at the top level or one folder down, or an MSD ``imagesTr`` without channel suffixes."""
    return bool(_lits_files(dataset)) or _is_msd(dataset)


def _lits_files(dataset: Path) -> list[Path]:
    found = []
    for pattern in ("*", "*/*"):
        for path in dataset.glob(pattern):
            if path.is_file() and not path.name.startswith(".") and volume_extension(path) and _LITS_FILE.match(strip_extension(path)):
                found.append(path)
    return sorted(found)


def _is_msd(dataset: Path) -> bool:
    images = dataset / "imagesTr"
    if not images.is_dir():
        return False
    names = [strip_extension(p) for p in images.iterdir() if not p.name.startswith(".") and volume_extension(p)]
    return bool(names) and not all(re.search(r"_\d{4}$", n) for n in names)


def lits_case_files(dataset: str | Path, require_label: bool = True, annotated_phase: str = ANNOTATED_PHASE) -> list[CaseFiles]:
    """The cases of a LiTS or MSD Task03 dataset, each with its one phase as ``annotated_phase``."""
    dataset = Path(dataset)
    cases = _msd_cases(dataset, require_label, annotated_phase) if _is_msd(dataset) else _lits_cases(dataset, require_label, annotated_phase)
    if not cases:
        raise InputError("empty dataset: no volume-N.nii / segmentation-N.nii (LiTS) or imagesTr/liver_N.nii.gz (MSD) found", dataset)
    return cases


def _lits_cases(dataset: Path, require_label: bool, phase: str) -> list[CaseFiles]:
    volumes: dict[str, Path] = {}
    segmentations: dict[str, Path] = {}
    issues: dict[str, list[tuple[Path, str]]] = {}
    for path in _lits_files(dataset):
        match = _LITS_FILE.match(strip_extension(path))
        if match is None:
            continue
        number = int(match["number"])
        if match["kind"] == "test-volume":
            if require_label:
                continue
            case_id = f"lits_test_{number:03d}"
        else:
            case_id = f"lits_{number:03d}"
        table = segmentations if match["kind"] == "segmentation" else volumes
        if case_id in table:
            issues.setdefault(case_id, []).append((path, f"{case_id} is given twice ({table[case_id]} and {path.name}); keep one"))
            continue
        table[case_id] = path
    cases = []
    for case_id in sorted(set(volumes) | set(segmentations)):
        any_file = volumes.get(case_id) or segmentations[case_id]
        number = _LITS_FILE.match(strip_extension(any_file))["number"]  # type: ignore[index]
        ext = volume_extension(any_file)
        expected = {phase: any_file.parent / f"volume-{number}{ext}", "label": any_file.parent / f"segmentation-{number}{ext}"}
        phases = {phase: volumes[case_id]} if case_id in volumes else {}
        cases.append(CaseFiles(case_id, any_file.parent, phases, segmentations.get(case_id),
                               issues=tuple(issues.get(case_id, [])), expected=expected))
    return cases


def _msd_cases(dataset: Path, require_label: bool, phase: str) -> list[CaseFiles]:
    cases = []
    splits = [("imagesTr", "labelsTr")] + ([("imagesTs", "labelsTs")] if not require_label else [])
    for images, labels in splits:
        folder = dataset / images
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            ext = volume_extension(path)
            if path.name.startswith(".") or ext is None:
                continue
            case_id = strip_extension(path)
            label = dataset / labels / path.name
            cases.append(CaseFiles(case_id, folder, {phase: path}, label if label.is_file() else None, expected={"label": label}))
    return cases


def read_lits_dataset(dataset: str | Path, require_label: bool = True, annotated_phase: str = ANNOTATED_PHASE) -> list[Case]:
    """Read a LiTS or MSD Task03 dataset as single-phase cases (the phase is ``annotated_phase``, PVP)."""
    return [read_case_files(files, annotated_phase, require_label)
            for files in lits_case_files(dataset, require_label, annotated_phase)]
