"""Load a dataset of any supported layout into :class:`Case` objects.

Layouts: the native one (``DATASET/<case>/<PHASE>.nii.gz`` + ``label.nii.gz``), nnU-Net v2 raw
(``dataset.json`` + ``imagesTr/`` + ``labelsTr/``) and LiTS / MSD Task03 (``volume-N.nii`` +
``segmentation-N.nii``, single phase, read as PVP-only cases).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from diff4mmlits.data.case import Case
from diff4mmlits.data.native import read_native_dataset
from diff4mmlits.errors import InputError

Layout = Literal["native", "nnunet", "lits"]


def detect_layout(dataset: str | Path) -> Layout:
    """Guess a dataset's layout from its files."""
    dataset = Path(dataset)
    if not dataset.exists():
        raise InputError("dataset folder not found; check the path", dataset)
    if not dataset.is_dir():
        raise InputError("not a folder; a dataset is a folder of case folders", dataset)
    if (dataset / "dataset.json").is_file() and (dataset / "imagesTr").is_dir():
        return "nnunet"
    names = [p.name for p in dataset.iterdir()]
    if any(n.startswith("volume-") for n in names) or (dataset / "imagesTr").is_dir() and not (dataset / "dataset.json").exists():
        return "lits"
    return "native"


def load_dataset(dataset: str | Path, require_label: bool = True) -> list[Case]:
    """Read every case of a dataset, whatever its layout."""
    layout = detect_layout(dataset)
    if layout == "native":
        return read_native_dataset(dataset, require_label=require_label)
    if layout == "nnunet":
        from diff4mmlits.data.nnunet import read_nnunet_dataset

        return read_nnunet_dataset(dataset, require_label=require_label)
    from diff4mmlits.data.lits import read_lits_dataset

    return read_lits_dataset(dataset, require_label=require_label)
