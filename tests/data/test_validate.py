"""``diff4mmlits validate``: every bad input gets one line (file, problem, fix), a non-zero exit,
and nothing is written; all problems of a dataset are reported, not only the first."""

from __future__ import annotations

import gzip
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from data_builders import Build

from diff4mmlits.cli import main
from diff4mmlits.data.dataset import load_dataset
from diff4mmlits.data.io import read_volume, write_volume
from diff4mmlits.data.validate import validate_dataset
from diff4mmlits.errors import InputError

CASE = "case_000"


# --- ways to break a clean dataset (each returns the path its problem line must name) ---------
def _ap(root: Path) -> Path:
    return root / CASE / "AP.nii.gz"


def _pvp(root: Path) -> Path:
    return root / CASE / "PVP.nii.gz"


def _label(root: Path) -> Path:
    return root / CASE / "label.nii.gz"


def _nifti(path: Path, array: np.ndarray, zooms=(0.8, 0.8, 2.5), affine: np.ndarray | None = None) -> Path:
    """Write with nibabel (which, unlike SimpleITK, writes what we ask); array in (x, y, z)."""
    image = nib.Nifti1Image(array, np.diag([*zooms, 1.0]) if affine is None else affine)
    nib.save(image, str(path))
    return path


def _ap_array(root: Path) -> np.ndarray:
    return read_volume(_ap(root)).array.transpose(2, 1, 0)  # (x, y, z) for nibabel


def _rewrite(path: Path, change: Callable[[np.ndarray], np.ndarray], kind: str = "image") -> Path:
    volume = read_volume(path, kind=kind)
    write_volume(volume.with_array(change(volume.array)), path)
    return path


def unreadable(root: Path) -> Path:
    _ap(root).write_bytes(np.random.default_rng(0).bytes(3000))
    return _ap(root)


def truncated(root: Path) -> Path:
    data = _pvp(root).read_bytes()
    _pvp(root).write_bytes(data[: len(data) // 2])
    return _pvp(root)


def empty_file(root: Path) -> Path:
    _ap(root).write_bytes(b"")
    return _ap(root)


def text_file(root: Path) -> Path:
    _ap(root).write_text("patient notes, not an image\n")
    return _ap(root)


def png_phase(root: Path) -> Path:
    path = root / CASE / "DP.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    return path


def two_dimensional(root: Path) -> Path:
    return _nifti(_ap(root), _ap_array(root)[:, :, 0])


def four_dimensional(root: Path) -> Path:
    array = _ap_array(root)
    return _nifti(_ap(root), np.stack([array, array], axis=-1))


def single_slice(root: Path) -> Path:
    volume = read_volume(_ap(root))
    write_volume(type(volume)(volume.array[:1], volume.spacing_mm, volume.origin_mm, volume.direction), _ap(root))
    return _ap(root)


def nan_voxels(root: Path) -> Path:
    return _rewrite(_pvp(root), lambda a: np.where(a > 90, np.nan, a).astype(np.float32))


def inf_voxels(root: Path) -> Path:
    return _rewrite(_ap(root), lambda a: np.where(a > 90, np.inf, a).astype(np.float32))


def unit_floats(root: Path) -> Path:
    return _rewrite(_pvp(root), lambda a: ((a - a.min()) / (a.max() - a.min())).astype(np.float32))


def eight_bit(root: Path) -> Path:
    return _rewrite(_ap(root), lambda a: np.clip((a + 1000) / 8, 0, 255).astype(np.uint8))


def label_value_three(root: Path) -> Path:
    return _rewrite(_label(root), lambda a: np.where(a == 2, 3, a).astype(np.uint8), kind="label")


def label_non_integer(root: Path) -> Path:
    return _rewrite(_label(root), lambda a: a.astype(np.float32) * 0.5, kind="image")


def _label_geometry(root: Path, **change) -> Path:
    label = read_volume(_label(root), kind="label")
    values = {"array": label.array, "spacing_mm": label.spacing_mm, "origin_mm": label.origin_mm, "direction": label.direction, "kind": "label"}
    values.update(change)
    write_volume(type(label)(**values), _label(root))
    return _label(root)


def label_shape(root: Path) -> Path:
    return _label_geometry(root, array=np.zeros((8, 10, 11), np.uint8))


def label_spacing(root: Path) -> Path:
    return _label_geometry(root, spacing_mm=(3.0, 0.8, 0.8))


def label_origin(root: Path) -> Path:
    return _label_geometry(root, origin_mm=(5.0, 0.0, 0.0))


def label_direction(root: Path) -> Path:
    return _label_geometry(root, direction=np.diag([1.0, -1.0, 1.0]))


def missing_annotated(root: Path) -> Path:
    _pvp(root).unlink()
    return root / CASE


def missing_label(root: Path) -> Path:
    _label(root).unlink()
    return root / CASE


def unknown_phase(root: Path) -> Path:
    path = root / CASE / "T2.nii.gz"
    shutil.copy(_ap(root), path)
    return path


def empty_case(root: Path) -> Path:
    (root / "case_002").mkdir()
    return root / "case_002"


def no_overlap(root: Path) -> Path:
    volume = read_volume(_ap(root))
    write_volume(type(volume)(volume.array, volume.spacing_mm, (2000.0, 0.0, 0.0), volume.direction), _ap(root))
    return _ap(root)


def _patch_pixdim(path: Path, axis: int, value: float) -> Path:
    """Set ``pixdim[axis]`` in the header bytes (nibabel and SimpleITK both refuse to write ≤ 0)."""
    data = bytearray(gzip.decompress(path.read_bytes()))
    struct.pack_into("<f", data, 76 + 4 * axis, value)  # pixdim: 8 float32 at byte 76 of a NIfTI-1 header
    path.write_bytes(gzip.compress(bytes(data)))
    return path


def zero_spacing(root: Path) -> Path:
    return _patch_pixdim(_ap(root), 3, 0.0)


def negative_spacing(root: Path) -> Path:
    return _patch_pixdim(_ap(root), 1, -0.8)


def huge_spacing(root: Path) -> Path:
    volume = read_volume(_ap(root))
    write_volume(type(volume)(volume.array, (25.0, 0.8, 0.8), volume.origin_mm, volume.direction), _ap(root))
    return _ap(root)


def micrometre_spacing(root: Path) -> Path:
    """1e-6 mm passed as "> 0" and predict wrote an empty label with exit 0."""
    volume = read_volume(_ap(root))
    write_volume(type(volume)(volume.array, (1e-6, 1e-6, 1e-6), volume.origin_mm, volume.direction), _ap(root))
    return _ap(root)


def sheared_nifti(root: Path) -> Path:
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    affine[0, 1] = 0.5
    return _nifti(_ap(root), _ap_array(root), affine=affine)


def nan_origin(root: Path) -> Path:
    """Was reported as 'the direction matrix is not orthonormal' (a NaN in the affine spoils both)."""
    image = nib.load(str(_ap(root)))
    affine = image.affine.copy()
    affine[0, 3] = np.nan
    return _nifti(_ap(root), np.asarray(image.dataobj), affine=affine)


def sheared_mha(root: Path) -> Path:
    image = sitk.ReadImage(str(_ap(root)))
    image.SetDirection((1.0, 0.5, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    path = root / CASE / "AP.mha"
    sitk.WriteImage(image, str(path))
    _ap(root).unlink()
    return path


def dicom_missing_slice(root: Path) -> Path:
    volume = read_volume(_pvp(root))
    files = Build.dicom_series(root / CASE / "PVP", np.round(volume.array), spacing=volume.spacing_mm, origin=volume.origin_mm)
    files[4].unlink()
    _pvp(root).unlink()
    return root / CASE / "PVP"


def tumor_outside_liver(root: Path) -> Path:
    def add_far_tumor(a: np.ndarray) -> np.ndarray:
        a = a.copy()
        a[0, 0, 0] = 2
        return a

    return _rewrite(_label(root), add_far_tumor, kind="label")


BAD_INPUTS = [
    (unreadable, "cannot be read as an image"),
    (truncated, "truncated"),
    (empty_file, "empty (0 bytes)"),
    (text_file, "cannot be read as an image"),
    (png_phase, "not a volume format"),
    (two_dimensional, "expected a 3D image, got a 2D"),
    (four_dimensional, "expected a 3D image, got a 4D"),
    (single_slice, "not a 3D volume"),
    (nan_voxels, "NaN or Inf"),
    (inf_voxels, "NaN or Inf"),
    (unit_floats, "not Hounsfield units"),
    (eight_bit, "8-bit image, not Hounsfield units"),
    (label_value_three, "label values [3] are outside {0, 1, 2}"),
    (label_non_integer, "non-integer"),
    (label_shape, "label grid differs from PVP: shape"),
    (label_spacing, "label grid differs from PVP: spacing"),
    (label_origin, "label grid differs from PVP: origin"),
    (label_direction, "label grid differs from PVP: direction"),
    (missing_annotated, "the annotated phase PVP is missing"),
    (missing_label, "no label file"),
    (unknown_phase, "unknown phase name 'T2'"),
    (empty_case, "empty case folder"),
    (no_overlap, "does not overlap PVP in physical space"),
    (zero_spacing, "absurd voxel spacing"),
    (negative_spacing, "absurd voxel spacing"),
    (huge_spacing, "absurd voxel spacing"),
    (micrometre_spacing, "absurd voxel spacing"),
    (sheared_nifti, "not orthonormal"),
    (nan_origin, "the origin is not a finite position"),
    (sheared_mha, "not orthonormal"),
    (dicom_missing_slice, "missing slice"),
]


@pytest.fixture
def dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean two-case dataset (AP + PVP + label) in the working directory."""
    monkeypatch.chdir(tmp_path)
    return Build().dataset(tmp_path / "dataset", n_cases=2, phases=("AP", "PVP"))


def run_validate(dataset: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, list[str]]:
    """Run the command in-process; return its exit status and its problem lines."""
    capsys.readouterr()
    code = main(["validate", str(dataset), *extra])
    captured = capsys.readouterr()
    lines = [line for line in (captured.err + captured.out).splitlines() if line.startswith(("error:", "warning:"))]
    return code, lines


def test_a_clean_dataset_passes(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = run_validate(dataset, capsys)
    assert (code, lines) == (0, [])
    report = validate_dataset(dataset)
    assert [row.case_id for row in report.rows] == ["case_000", "case_001"]
    assert report.rows[0].phases == ("AP", "PVP") and report.rows[0].label_classes == (0, 1, 2)


@pytest.mark.parametrize(("breaker", "expected"), BAD_INPUTS, ids=[b.__name__ for b, _ in BAD_INPUTS])
def test_bad_input_gets_one_line_and_exit_2(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            breaker: Callable[[Path], Path], expected: str) -> None:
    culprit = breaker(dataset)
    before = Build.snapshot(tmp_path)
    code, lines = run_validate(dataset, capsys)
    assert code == 2
    assert Build.snapshot(tmp_path) == before, "validate wrote or changed a file"
    matching = [line for line in lines if expected in line]
    assert len(matching) == 1, lines
    assert matching[0].startswith(f"error: {culprit}: "), matching[0]
    assert "; " in matching[0]  # the line ends with what to do
    errors = [line for line in lines if line.startswith("error:")]
    assert all(str(dataset / "case_001") not in line for line in errors), "a clean case got an error"
    # the readers refuse the same input with one line (no traceback, no half-read case)
    with pytest.raises(InputError) as err:
        load_dataset(dataset)
    assert "\n" not in str(err.value)


def test_tumor_outside_the_liver_is_a_warning(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    culprit = tumor_outside_liver(dataset)
    code, lines = run_validate(dataset, capsys)
    assert code == 0
    assert lines == [f"warning: {culprit}: 1 tumor component(s) (1 voxels) lie outside the liver; check the label"]


@pytest.mark.parametrize("make", ["missing", "empty", "not-a-folder"])
def test_empty_or_missing_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str], make: str) -> None:
    dataset = tmp_path / "dataset"
    if make == "empty":
        dataset.mkdir()
    elif make == "not-a-folder":
        dataset.write_text("x")
    before = Build.snapshot(tmp_path)
    code, lines = run_validate(dataset, capsys)
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {dataset}: ")
    assert {"missing": "not found", "empty": "empty dataset", "not-a-folder": "not a folder"}[make] in lines[0]
    assert Build.snapshot(tmp_path) == before


def test_every_problem_of_a_dataset_is_reported(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Problems are collected over cases and files; an unreadable phase does not hide the others."""
    unreadable(dataset)  # case_000/AP unreadable …
    label_value_three(dataset)  # … and its label is broken too
    nan_voxels(dataset)  # … and its PVP holds NaN
    second = dataset / "case_001"
    (second / "T2.nii.gz").write_bytes(b"")  # case_001: an unknown phase …
    write_volume(read_volume(second / "AP.nii.gz").with_array(np.zeros((8, 10, 12), np.float32)), second / "AP.nii.gz")  # … a constant AP
    empty_case(dataset)
    code, lines = run_validate(dataset, capsys)
    assert code == 2
    expected = [
        (dataset / CASE / "AP.nii.gz", "cannot be read"),
        (dataset / CASE / "PVP.nii.gz", "voxel(s) are NaN or Inf"),
        (dataset / CASE / "label.nii.gz", "label values [3]"),
        (second / "T2.nii.gz", "unknown phase name"),
        (second / "AP.nii.gz", "the image is constant"),
        (dataset / "case_002", "empty case folder"),
    ]
    for path, text in expected:
        assert sum(line.startswith(f"error: {path}: ") and text in line for line in lines) == 1, (path, lines)
    assert len(lines) == len(expected), lines


def test_unlabelled_option(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing_label(dataset)
    assert run_validate(dataset, capsys)[0] == 2
    assert run_validate(dataset, capsys, "--unlabelled") == (0, [])


def test_raise_for_errors_is_one_line_with_a_count(dataset: Path) -> None:
    unreadable(dataset)
    missing_label(dataset)
    report = validate_dataset(dataset)
    assert not report.ok and len(report.errors) == 2
    with pytest.raises(InputError, match=r"^\S+case_000: no label file.*\(and 1 more problem\(s\); run 'diff4mmlits validate"):
        report.raise_for_errors()


def test_a_case_without_a_phase_the_others_have_is_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A phantom cut short by a full disk left a case without DP, and validate called the dataset clean."""
    dataset = Build().dataset(tmp_path / "dataset", n_cases=3, phases=("AP", "PVP"))
    next((dataset / "case_001").glob("AP.*")).unlink()
    code, lines = run_validate(dataset, capsys)
    assert code == 0
    assert lines == [f"warning: {dataset / 'case_001'}: no AP phase, which 2 of the 3 cases have; the segmenter fills "
                     "its channel from the nearest phase (check the export if the scan exists)"]


def test_the_annotated_phase_option_takes_phase_names_and_refuses_others(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--annotated-phase ap`` or ``XYZ`` gave one "annotated phase missing" error per case."""
    for name in ("ap", "arterial", "portal-venous", "PVP"):
        assert main(["validate", str(dataset), "--annotated-phase", name]) == 0, name
    capsys.readouterr()
    assert main(["validate", str(dataset), "--annotated-phase", "XYZ"]) == 2
    assert "--annotated-phase 'XYZ': not a phase" in capsys.readouterr().err


def test_a_case_folder_that_is_a_dicom_series_is_named_as_such(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A series' files directly in a case folder were reported as 'empty case folder: no image files
    (... or a DICOM folder)' — contradictory to a user looking at a folder of DICOM files."""
    array = np.full((4, 10, 12), -50, np.int16)
    Build.dicom_series(dataset / "scan", array, spacing=(2.5, 1.5, 1.5), origin=(0.0, 0.0, 0.0))
    code, lines = run_validate(dataset, capsys)
    assert code == 2
    assert [line for line in lines if "scan" in line] == [
        f"error: {dataset / 'scan'}: holds a DICOM series itself, not one file or DICOM folder per phase: give this "
        "folder to predict on its own, or move the series into scan/PVP/"]


def test_a_nan_origin_is_the_first_problem_a_reader_names(dataset: Path) -> None:
    """A NaN in the affine spoils the direction ITK derives too; readers raise the first problem, which
    named the direction ('not orthonormal'), sending the user to the wrong part of the header."""
    from diff4mmlits.data.casefiles import read_checked_image

    with pytest.raises(InputError, match="the origin is not a finite position"):
        read_checked_image(nan_origin(dataset))
