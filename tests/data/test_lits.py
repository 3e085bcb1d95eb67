"""LiTS and MSD Task03 layouts: single-phase CT read as PVP-only cases; layout detection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from data_builders import Build

from diff4mmlits.data.dataset import detect_layout, load_dataset
from diff4mmlits.data.io import write_volume
from diff4mmlits.data.lits import read_lits_dataset
from diff4mmlits.data.validate import validate_dataset
from diff4mmlits.errors import InputError


def test_lits_layout_in_batches(tmp_path: Path) -> None:
    """volume-N.nii + segmentation-N.nii, one folder down as LiTS ships them; test volumes unlabelled."""
    build = Build()
    cases = {n: build.case(phases=("PVP",)) for n in (0, 12)}
    for n, case in cases.items():
        batch = tmp_path / f"Training Batch {1 + n // 10}"
        write_volume(case.phases["PVP"], batch / f"volume-{n}.nii")
        write_volume(case.label, batch / f"segmentation-{n}.nii")
    write_volume(build.ct(), tmp_path / "test-volume-3.nii.gz")
    assert detect_layout(tmp_path) == "lits"
    read = read_lits_dataset(tmp_path)
    assert [c.case_id for c in read] == ["lits_000", "lits_012"]
    assert all(c.phase_names == ["PVP"] for c in read)
    np.testing.assert_allclose(read[1].phases["PVP"].array, cases[12].phases["PVP"].array)
    np.testing.assert_array_equal(read[1].label.array, cases[12].label.array)
    assert [c.case_id for c in load_dataset(tmp_path, require_label=False)] == ["lits_000", "lits_012", "lits_test_003"]
    assert validate_dataset(tmp_path).ok


def test_msd_task03_layout(tmp_path: Path) -> None:
    build = Build()
    case = build.case(phases=("PVP",))
    write_volume(case.phases["PVP"], tmp_path / "imagesTr" / "liver_4.nii.gz")
    write_volume(case.label, tmp_path / "labelsTr" / "liver_4.nii.gz")
    write_volume(build.ct(), tmp_path / "imagesTs" / "liver_140.nii.gz")
    (tmp_path / "imagesTr" / "._liver_4.nii.gz").write_bytes(b"macOS resource fork")  # shipped in the MSD tarball
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "Liver", "modality": {"0": "CT"},
                                                       "labels": {"0": "background", "1": "liver", "2": "cancer"}}))
    assert detect_layout(tmp_path) == "lits"
    read = load_dataset(tmp_path)
    assert [(c.case_id, c.phase_names) for c in read] == [("liver_4", ["PVP"])]
    np.testing.assert_array_equal(read[0].label.array, case.label.array)
    assert [c.case_id for c in load_dataset(tmp_path, require_label=False)] == ["liver_4", "liver_140"]


def test_lits_problems_are_reported(tmp_path: Path) -> None:
    build = Build()
    case = build.case(phases=("PVP",))
    write_volume(case.phases["PVP"], tmp_path / "volume-1.nii")
    write_volume(case.label, tmp_path / "segmentation-1.nii")
    write_volume(case.phases["PVP"], tmp_path / "volume-2.nii")  # no segmentation
    write_volume(case.label, tmp_path / "segmentation-3.nii")  # no volume
    report = validate_dataset(tmp_path)
    assert [(Path(p.path).name, p.message.split(";")[0]) for p in report.errors] == [
        ("segmentation-2.nii", "file not found: case lits_002 has no label"),
        ("volume-3.nii", "file not found: case lits_003 has no PVP image (the annotated phase)"),
    ]
    with pytest.raises(InputError, match="segmentation-2.nii: file not found"):
        read_lits_dataset(tmp_path)


@pytest.mark.parametrize(
    ("files", "layout"),
    [
        (["case_000/PVP.nii.gz"], "native"),
        (["volume-0.nii"], "lits"),
        (["imagesTr/liver_0.nii.gz"], "lits"),
        (["imagesTr/liver_000_0000.nii.gz"], "nnunet"),
    ],
)
def test_detect_layout(tmp_path: Path, files: list[str], layout: str) -> None:
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert detect_layout(tmp_path) == layout
