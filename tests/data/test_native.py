"""The native layout: case folders, phase aliases (mapped and logged), round trips."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from data_builders import Build

from diff4mmlits.data.dataset import detect_layout, load_dataset
from diff4mmlits.data.io import write_volume
from diff4mmlits.data.native import (
    canonical_phase_name,
    list_case_folders,
    read_case_folder,
    read_native_dataset,
    scan_case_folder,
    write_case_folder,
)
from diff4mmlits.errors import InputError


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def native_log():
    """Messages logged by diff4mmlits.data.native (the CLI turns propagation off, so listen directly)."""
    logger = logging.getLogger("diff4mmlits.data.native")
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.messages
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.mark.parametrize(
    ("stem", "phase"),
    [
        ("PVP", "PVP"), ("pvp", "PVP"), ("plain", "NC"), ("Native", "NC"), ("non-contrast", "NC"),
        ("arterial", "AP"), ("Arterial_Phase", "AP"), ("late arterial", "AP"), ("portal", "PVP"),
        ("venous", "PVP"), ("portal-venous", "PVP"), ("delayed", "DP"), ("Delayed Phase", "DP"),
        ("equilibrium", "DP"), ("T2", None), ("label", None), ("phase", None),
    ],
)
def test_canonical_phase_name(stem: str, phase: str | None) -> None:
    assert canonical_phase_name(stem) == phase


def test_aliases_are_mapped_and_logged(tmp_path: Path, native_log: list[str]) -> None:
    case = Build().case(phases=("NC", "AP", "PVP", "DP"))
    folder = tmp_path / "study_1"
    for alias, phase in [("plain", "NC"), ("arterial", "AP"), ("portal", "PVP"), ("delayed", "DP")]:
        write_volume(case.phases[phase], folder / f"{alias}.nii.gz")
    write_volume(case.label, folder / "segmentation.nii.gz")
    read = read_case_folder(folder)
    assert read.phase_names == ["NC", "AP", "PVP", "DP"]
    for phase in read.phase_names:
        np.testing.assert_array_equal(read.phases[phase].array, case.phases[phase].array)
    np.testing.assert_array_equal(read.label.array, case.label.array)
    assert "study_1: file arterial.nii.gz read as phase AP" in native_log
    assert "study_1: file portal.nii.gz read as phase PVP" in native_log
    assert "study_1: file plain.nii.gz read as phase NC" in native_log
    assert "study_1: file delayed.nii.gz read as phase DP" in native_log
    assert "study_1: file segmentation.nii.gz read as the label" in native_log


def test_case_folder_round_trip(tmp_path: Path) -> None:
    case = Build().case(phases=("AP", "PVP"))
    mask = case.label.with_array((case.label.array > 0).astype(np.uint8))
    case = type(case)(case.case_id, case.phases, case.label, extras={"inpaint_mask": mask})
    write_case_folder(case, tmp_path / case.case_id)
    (tmp_path / case.case_id / "qc.json").write_text("{}")  # companions are ignored
    (tmp_path / case.case_id / "AP.tfm").write_text("#Insight Transform File V1.0\n")
    back = read_case_folder(tmp_path / case.case_id, extra_names=("inpaint_mask",))
    assert back.phase_names == ["AP", "PVP"]
    assert back.label.array.dtype == np.uint8
    np.testing.assert_array_equal(back.extras["inpaint_mask"].array, mask.array)
    for name in ("AP", "PVP"):
        np.testing.assert_allclose(back.phases[name].array, case.phases[name].array)
        assert back.phases[name].same_grid(case.phases[name])


def test_underscore_and_dot_folders_are_not_cases(tmp_path: Path) -> None:
    Build().dataset(tmp_path, n_cases=2)
    (tmp_path / "_truth" / "case_000").mkdir(parents=True)
    (tmp_path / ".cache").mkdir()
    assert [p.name for p in list_case_folders(tmp_path)] == ["case_000", "case_001"]
    assert detect_layout(tmp_path) == "native"
    assert [c.case_id for c in load_dataset(tmp_path)] == ["case_000", "case_001"]


def test_unlabelled_cases_for_prediction(tmp_path: Path) -> None:
    write_case_folder(Build().case(labelled=False), tmp_path / "case_000")
    with pytest.raises(InputError, match="no label file"):
        read_native_dataset(tmp_path)
    assert read_native_dataset(tmp_path, require_label=False)[0].label is None


def test_a_phase_given_twice_is_an_issue(tmp_path: Path) -> None:
    case = Build().case(phases=("AP", "PVP"))
    write_case_folder(case, tmp_path / "c")
    write_volume(case.phases["AP"], tmp_path / "c" / "arterial.nii.gz")
    files = scan_case_folder(tmp_path / "c")
    assert len(files.issues) == 1 and "given twice" in files.issues[0][1]
    with pytest.raises(InputError, match="given twice"):
        read_case_folder(tmp_path / "c")


def test_pointing_at_a_case_folder_gets_a_hint(tmp_path: Path) -> None:
    write_case_folder(Build().case(), tmp_path / "case_000")
    with pytest.raises(InputError, match="looks like one case folder"):
        read_native_dataset(tmp_path / "case_000")


def test_stage_outputs_with_extra_volumes(tmp_path: Path) -> None:
    """normal/<case>/ keeps inpaint_mask.nii.gz beside the phases: named, it is read as an extra."""
    case = Build().case(phases=("PVP",))
    write_case_folder(case, tmp_path / "case_000")
    write_volume(case.label, tmp_path / "case_000" / "inpaint_mask.nii.gz")
    with pytest.raises(InputError, match="unknown phase name 'inpaint_mask'"):
        load_dataset(tmp_path)
    (read,) = load_dataset(tmp_path, extra_names=("inpaint_mask",))
    np.testing.assert_array_equal(read.extras["inpaint_mask"].array, case.label.array)


def test_a_folder_of_volumes_without_phase_names_says_so(tmp_path) -> None:
    """A case folder holding only T1.nii.gz was called an empty dataset with no further word."""
    import numpy as np

    from diff4mmlits.data.io import write_volume
    from diff4mmlits.data.native import native_case_files
    from diff4mmlits.data.volume import Volume
    from diff4mmlits.errors import InputError

    write_volume(Volume(np.zeros((2, 4, 4), np.float32), (1.0, 1.0, 1.0)), tmp_path / "T1.nii.gz")
    with pytest.raises(InputError, match="it holds T1.nii.gz, which is no phase name"):
        native_case_files(tmp_path)
