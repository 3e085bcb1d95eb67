"""Load a dataset of any supported layout into :class:`Case` objects.

Layouts: the native one (``DATASET/<case>/<PHASE>.nii.gz`` + ``label.nii.gz``), nnU-Net v2 raw
(``dataset.json`` with ``channel_names`` + ``imagesTr/<case>_0000.nii.gz`` + ``labelsTr/``) and
LiTS / MSD Task03 (``volume-N.nii`` + ``segmentation-N.nii``, or ``imagesTr/liver_N.nii.gz``
without channel suffixes; single phase, read as PVP-only cases).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from diff4mmlits.data.case import ANNOTATED_PHASE, Case
from diff4mmlits.data.casefiles import CaseFiles, read_case_files
from diff4mmlits.errors import InputError

Layout = Literal["native", "nnunet", "lits"]


def detect_layout(dataset: str | Path) -> Layout:
    """Tell a dataset's layout from its files.

    nnU-Net v2: ``dataset.json`` with ``channel_names``, or ``imagesTr`` files all named
    ``<case>_<XXXX>``. LiTS / MSD: ``volume-N`` files, or an ``imagesTr`` without channel suffixes
    (MSD's ``dataset.json`` has ``modality``, not ``channel_names``). Anything else is native.
    """
    from diff4mmlits.data.lits import is_lits_dataset

    dataset = Path(dataset)
    if not dataset.exists():
        raise InputError("dataset folder not found; check the path", dataset)
    if not dataset.is_dir():
        raise InputError("not a folder; a dataset is a folder of case folders (or an nnU-Net / LiTS dataset folder)", dataset)
    meta_path = dataset / "dataset.json"
    if (dataset / "imagesTr").is_dir():
        if meta_path.is_file() and "channel_names" in _json_keys(meta_path):
            return "nnunet"
        images = [p.name for p in (dataset / "imagesTr").iterdir() if not p.name.startswith(".")]
        if images and all(re.search(r"_\d{4}\.", name) for name in images):
            return "nnunet"
        return "lits"
    if is_lits_dataset(dataset):
        return "lits"
    return "native"


def _json_keys(path: Path) -> set[str]:
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return set()  # the nnU-Net reader reports the broken file
    return set(meta) if isinstance(meta, dict) else set()


def list_case_files(
    dataset: str | Path, require_label: bool = True, annotated_phase: str = ANNOTATED_PHASE, extra_names: Iterable[str] = ()
) -> list[CaseFiles]:
    """Where every case's files are, whatever the layout (raises :class:`InputError` for a dataset
    that cannot be listed: missing folder, empty dataset, broken ``dataset.json``). ``extra_names``:
    volumes a stage keeps beside the phases in the native layout (e.g. ``inpaint_mask``)."""
    layout = detect_layout(dataset)
    if layout == "nnunet":
        from diff4mmlits.data.nnunet import nnunet_case_files

        return nnunet_case_files(dataset, require_label, annotated_phase)
    if layout == "lits":
        from diff4mmlits.data.lits import lits_case_files

        return lits_case_files(dataset, require_label, annotated_phase)
    from diff4mmlits.data.native import native_case_files

    return native_case_files(dataset, extra_names)


def load_dataset(
    dataset: str | Path, require_label: bool = True, annotated_phase: str = ANNOTATED_PHASE, extra_names: Iterable[str] = ()
) -> list[Case]:
    """Read every case of a dataset, whatever its layout (the first problem raises; run
    :func:`diff4mmlits.data.validate.validate_dataset` first to see them all)."""
    return [read_case_files(files, annotated_phase, require_label)
            for files in list_case_files(dataset, require_label, annotated_phase, extra_names)]


def read_case_or_dataset(path: str | Path, annotated_phase: str = ANNOTATED_PHASE) -> list[Case]:
    """One case folder (it holds phase images itself, under any phase alias), or every case of a
    dataset of any layout; labels are read where present, not required."""
    from diff4mmlits.data.native import read_case_folder, scan_case_folder

    path = Path(path)
    if not path.exists():
        raise InputError("input not found; give a case folder or a dataset folder", path)
    if path.is_dir() and scan_case_folder(path).phases:
        return [read_case_folder(path, annotated_phase=annotated_phase, require_label=False)]
    return load_dataset(path, require_label=False, annotated_phase=annotated_phase)
