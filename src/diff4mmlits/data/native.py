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
from diff4mmlits.data.io import IMAGE_EXTENSIONS, read_volume, strip_extension, volume_extension, write_volume
from diff4mmlits.data.volume import Volume
from diff4mmlits.errors import InputError

log = logging.getLogger(__name__)

LABEL_NAME = "label"

PHASE_ALIASES: dict[str, str] = {
    "nc": "NC", "plain": "NC", "native": "NC", "noncontrast": "NC", "non_contrast": "NC",
    "non-contrast": "NC", "unenhanced": "NC", "pre": "NC",
    "ap": "AP", "art": "AP", "arterial": "AP", "hap": "AP", "late_arterial": "AP",
    "pvp": "PVP", "pv": "PVP", "portal": "PVP", "venous": "PVP", "portal_venous": "PVP",
    "portalvenous": "PVP", "ven": "PVP",
    "dp": "DP", "delayed": "DP", "delay": "DP", "equilibrium": "DP", "del": "DP",
}
"""File stems (lower case) accepted as phase names, and the canonical phase each maps to."""


def is_case_folder_name(name: str) -> bool:
    """Folders starting with ``_`` or ``.`` hold extra data (truth, caches), not cases."""
    return not name.startswith(("_", "."))


def canonical_phase_name(stem: str) -> str | None:
    """Map a file stem to ``NC/AP/PVP/DP`` (case-insensitive, aliases allowed) or ``None``."""
    if stem in PHASES:
        return stem
    return PHASE_ALIASES.get(stem.lower())


def find_case_files(folder: Path, extra_names: Iterable[str] = ()) -> tuple[dict[str, Path], Path | None, dict[str, Path]]:
    """Sort the entries of a case folder into phases, label and extras.

    Returns ``(phases, label, extras)``. Image files whose stem is neither a phase, an alias, the
    label nor one of ``extra_names`` raise :class:`InputError` (an unknown phase name). Non-image
    files (``qc.json``, ``*.tfm``…) are ignored.
    """
    phases: dict[str, Path] = {}
    label: Path | None = None
    extras: dict[str, Path] = {}
    extra_names = set(extra_names)
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith((".", "_")):
            continue
        is_dicom_dir = entry.is_dir()
        if volume_extension(entry) is None and not is_dicom_dir:
            continue
        stem = strip_extension(entry)
        if stem.lower() == LABEL_NAME:
            label = entry
            continue
        if stem in extra_names:
            extras[stem] = entry
            continue
        phase = canonical_phase_name(stem)
        if phase is None:
            raise InputError(
                f"unknown phase name {stem!r}; name phase files {', '.join(PHASES)} "
                f"(or an alias such as arterial, portal, delayed)",
                entry,
            )
        if phase in phases:
            raise InputError(f"phase {phase} is given twice ({phases[phase].name} and {entry.name}); keep one", entry)
        if stem != phase:
            log.info("%s: file %s read as phase %s", folder.name, entry.name, phase)
        phases[phase] = entry
    return phases, label, extras


def read_case_folder(
    folder: str | Path,
    annotated_phase: str = ANNOTATED_PHASE,
    require_label: bool = True,
    extra_names: Iterable[str] = (),
) -> Case:
    """Read one native case folder into a :class:`Case` (images in HU, label as uint8)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("not a case folder", folder)
    phase_files, label_file, extra_files = find_case_files(folder, extra_names)
    if not phase_files and label_file is None:
        raise InputError(f"empty case folder: no image files ({', '.join(IMAGE_EXTENSIONS)}) found", folder)
    if annotated_phase not in phase_files:
        raise InputError(
            f"the annotated phase {annotated_phase} is missing (found: {', '.join(sorted(phase_files)) or 'none'}); "
            f"add {annotated_phase}.nii.gz",
            folder,
        )
    if require_label and label_file is None:
        raise InputError("no label file; add label.nii.gz on the annotated phase's grid", folder)
    phases = {name: read_volume(path) for name, path in phase_files.items()}
    label = read_volume(label_file, kind="label") if label_file is not None else None
    extras = {name: read_volume(path, kind="label") for name, path in extra_files.items()}
    if label is not None:
        label = label.with_array(label.array.astype("uint8"))
    try:
        return Case(case_id=folder.name, phases=phases, label=label, annotated_phase=annotated_phase, extras=extras)
    except InputError as err:
        raise InputError(str(err).replace(f"{folder.name}: ", "", 1), label_file or folder) from None


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


def read_native_dataset(dataset: str | Path, require_label: bool = True) -> list[Case]:
    """Read every case of a native dataset."""
    folders = list_case_folders(dataset)
    if not folders:
        raise InputError("empty dataset: no case folders found (expected DATASET/<case>/PVP.nii.gz)", dataset)
    return [read_case_folder(folder, require_label=require_label) for folder in folders]


def volume_of(case: Case, name: str) -> Volume:
    """A phase, ``label`` or an extra of a case, by name."""
    if name == LABEL_NAME and case.label is not None:
        return case.label
    if name in case.phases:
        return case.phases[name]
    if name in case.extras:
        return case.extras[name]
    raise KeyError(name)
