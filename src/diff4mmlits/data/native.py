"""The native dataset layout: ``DATASET/<case>/<PHASE>.<ext>`` plus ``label.<ext>``.

Folders whose names start with ``_`` or ``.`` are not cases (the phantom keeps its truth in
``_truth/``). Run-folder stage outputs (``registered/<case>/``, ``normal/<case>/``,
``synthetic/<case>/``) use the same layout, so one reader serves them all.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from diff4mmlits import PHASES
from diff4mmlits.data.case import ANNOTATED_PHASE, Case
from diff4mmlits.data.casefiles import CaseFiles, read_case_files
from diff4mmlits.data.io import IMAGE_EXTENSIONS, strip_extension, volume_extension, write_volume
from diff4mmlits.data.volume import Volume
from diff4mmlits.errors import InputError

log = logging.getLogger(__name__)

LABEL_NAME = "label"
LABEL_ALIASES: tuple[str, ...] = ("label", "labels", "seg", "segmentation")
"""File stems (lower case) read as the label."""

PHASE_ALIASES: dict[str, str] = {
    "nc": "NC", "plain": "NC", "native": "NC", "noncontrast": "NC", "non_contrast": "NC",
    "unenhanced": "NC", "nonenhanced": "NC", "non_enhanced": "NC", "pre": "NC", "precontrast": "NC",
    "pre_contrast": "NC",
    "ap": "AP", "art": "AP", "arterial": "AP", "hap": "AP", "late_arterial": "AP", "early_arterial": "AP",
    "hepatic_arterial": "AP",
    "pvp": "PVP", "pv": "PVP", "portal": "PVP", "venous": "PVP", "portal_venous": "PVP",
    "portalvenous": "PVP", "ven": "PVP",
    "dp": "DP", "delayed": "DP", "delay": "DP", "equilibrium": "DP", "del": "DP", "late": "DP",
}
"""Phase names accepted for files and nnU-Net channels (lower case, ``-`` and spaces read as
``_``, a trailing ``_phase`` dropped) and the canonical phase each maps to."""


UNSUPPORTED_EXTENSIONS: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".npy", ".npz", ".mat", ".hdr",
    ".dcm", ".zip", ".gz",
)
"""Endings of files that, named like a phase or the label, are reported as unreadable."""


def is_case_folder_name(name: str) -> bool:
    """Folders starting with ``_`` or ``.`` hold extra data (truth, caches), not cases."""
    return not name.startswith(("_", "."))


def canonical_phase_name(stem: str) -> str | None:
    """Map a file stem to ``NC/AP/PVP/DP`` (case-insensitive, aliases allowed) or ``None``.

    ``"Arterial"``, ``"portal-venous"``, ``"delayed phase"`` → ``AP``, ``PVP``, ``DP``.
    """
    if stem in PHASES:
        return stem
    key = "_".join(stem.strip().lower().replace("-", " ").replace("_", " ").split())
    if key.endswith("_phase"):
        key = key[: -len("_phase")]
    return PHASE_ALIASES.get(key)


def scan_case_folder(folder: str | Path, extra_names: Iterable[str] = ()) -> CaseFiles:
    """List a native case folder: phases (aliases mapped, and logged), label, extras, issues.

    Image files whose stem is neither a phase, an alias, the label nor one of ``extra_names`` are
    issues (an unknown phase name), as are files named like a phase in a format we do not read.
    Other files (``qc.json``, ``*.tfm``, ``provenance.json``…) are ignored.
    """
    folder = Path(folder)
    phases: dict[str, Path] = {}
    label: Path | None = None
    extras: dict[str, Path] = {}
    issues: list[tuple[Path, str]] = []
    extra_names = set(extra_names)
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith((".", "_")):
            continue
        stem = strip_extension(entry)
        if volume_extension(entry) is None and not entry.is_dir():
            base, _, ext = entry.name.partition(".")
            named_like_volume = canonical_phase_name(base) is not None or base.lower() in LABEL_ALIASES
            if named_like_volume and f".{ext.lower()}" in UNSUPPORTED_EXTENSIONS:
                issues.append((entry, f"not a volume format diff4mmlits reads (use {', '.join(IMAGE_EXTENSIONS)}, or a folder holding a DICOM series); convert it"))
            continue
        if stem.lower() in LABEL_ALIASES:
            if label is not None:
                issues.append((entry, f"the label is given twice ({label.name} and {entry.name}); keep one"))
                continue
            if stem != LABEL_NAME:
                log.info("%s: file %s read as the label", folder.name, entry.name)
            label = entry
            continue
        if stem in extra_names:
            extras[stem] = entry
            continue
        phase = canonical_phase_name(stem)
        if phase is None:
            issues.append((entry, f"unknown phase name {stem!r}; name phase files {', '.join(PHASES)} (or an alias such as plain, arterial, portal, delayed) and the label {LABEL_NAME}.nii.gz"))
            continue
        if phase in phases:
            issues.append((entry, f"phase {phase} is given twice ({phases[phase].name} and {entry.name}); keep one"))
            continue
        if stem != phase:
            log.info("%s: file %s read as phase %s", folder.name, entry.name, phase)
        phases[phase] = entry
    return CaseFiles(case_id=folder.name, location=folder, phases=phases, label=label, extras=extras, issues=tuple(issues))


def read_case_folder(
    folder: str | Path,
    annotated_phase: str = ANNOTATED_PHASE,
    require_label: bool = True,
    extra_names: Iterable[str] = (),
) -> Case:
    """Read one native case folder into a :class:`Case` (images in HU, label as uint8)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("not a case folder; give a folder holding PVP.nii.gz and label.nii.gz", folder)
    return read_case_files(scan_case_folder(folder, extra_names), annotated_phase=annotated_phase, require_label=require_label)


def write_case_folder(case: Case, folder: str | Path) -> Path:
    """Write a case in the native layout (``<PHASE>.nii.gz``, ``label.nii.gz``, extras)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, volume in case.phases.items():
        write_volume(volume, folder / f"{name}.nii.gz")
    if case.label is not None:
        write_volume(case.label, folder / f"{LABEL_NAME}.nii.gz")
    for name, volume in case.extras.items():
        write_volume(volume, folder / f"{name}.nii.gz")
    return folder


def list_case_folders(dataset: str | Path) -> list[Path]:
    """Case folders of a native dataset, sorted by name (``_``/``.`` folders skipped)."""
    dataset = Path(dataset)
    if not dataset.exists():
        raise InputError("dataset folder not found; check the path", dataset)
    if not dataset.is_dir():
        raise InputError("not a folder; a dataset is a folder of case folders", dataset)
    return sorted(p for p in dataset.iterdir() if p.is_dir() and is_case_folder_name(p.name))


def native_case_files(dataset: str | Path, extra_names: Iterable[str] = ()) -> list[CaseFiles]:
    """The cases of a native dataset, one :class:`CaseFiles` per case folder (``extra_names``: other
    volumes a stage keeps beside the phases, e.g. ``inpaint_mask``)."""
    dataset = Path(dataset)
    folders = list_case_folders(dataset)
    if not folders:
        hint = ""
        volumes = [p for p in dataset.iterdir() if volume_extension(p)]
        if any(canonical_phase_name(strip_extension(p)) for p in volumes):
            hint = " (this looks like one case folder: give the folder that holds the case folders)"
        elif volumes:
            hint = (f" (it holds {volumes[0].name}, which is no phase name: name the files NC, AP, PVP, DP or "
                    "arterial, portal-venous…)")
        raise InputError(f"empty dataset: no case folders found{hint}; expected DATASET/<case>/PVP.nii.gz and label.nii.gz", dataset)
    return [scan_case_folder(folder, extra_names) for folder in folders]


def read_native_dataset(dataset: str | Path, require_label: bool = True, annotated_phase: str = ANNOTATED_PHASE) -> list[Case]:
    """Read every case of a native dataset."""
    return [read_case_files(files, annotated_phase, require_label) for files in native_case_files(dataset)]


def volume_of(case: Case, name: str) -> Volume:
    """A phase, ``label`` or an extra of a case, by name."""
    if name == LABEL_NAME and case.label is not None:
        return case.label
    if name in case.phases:
        return case.phases[name]
    if name in case.extras:
        return case.extras[name]
    raise KeyError(name)
