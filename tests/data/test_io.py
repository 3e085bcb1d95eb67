"""Reading and writing volumes: SimpleITK conversion, file round trips, atomic writes, DICOM series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from data_builders import Build
from scipy.spatial.transform import Rotation

from conftest import REAL_DATA
from diff4mmlits.data import io
from diff4mmlits.data.io import from_sitk, read_volume, to_sitk, write_volume
from diff4mmlits.data.volume import Volume
from diff4mmlits.errors import InputError, StorageError

OBLIQUE_FLIPPED = Rotation.from_euler("zyx", [20.0, -35.0, 50.0], degrees=True).as_matrix() @ np.diag([1.0, -1.0, 1.0])
"""An oblique direction with one axis flipped (a left-handed frame, as many scanners write)."""


def oblique_volume(dtype=np.float32) -> Volume:
    array = np.random.default_rng(1).normal(40.0, 300.0, (5, 6, 7)).astype(dtype)
    return Volume(array, (2.5, 0.73, 0.81), (-812.3456789, 123.456789, -45.6789012), OBLIQUE_FLIPPED)


def assert_same_geometry(a: Volume, b: Volume, tol: float) -> None:
    np.testing.assert_allclose(a.spacing_mm, b.spacing_mm, atol=tol)
    np.testing.assert_allclose(a.origin_mm, b.origin_mm, atol=tol)
    np.testing.assert_allclose(a.direction, b.direction, atol=tol)


def test_sitk_round_trip_keeps_geometry_of_an_oblique_flipped_volume() -> None:
    volume = oblique_volume()
    back = from_sitk(to_sitk(volume))
    assert_same_geometry(volume, back, tol=1e-6)
    np.testing.assert_array_equal(back.array, volume.array)


def test_sitk_conversion_reverses_axes_and_maps_the_same_world_points() -> None:
    """Voxel (z, y, x) of the Volume and voxel (x, y, z) of the ITK image are one world point."""
    volume = oblique_volume()
    image = to_sitk(volume)
    assert image.GetSize() == (7, 6, 5)
    for index in [(0, 0, 0), (4, 5, 6), (1, 3, 2)]:
        world_zyx = volume.index_to_world(np.array(index, dtype=float))
        world_xyz = image.TransformIndexToPhysicalPoint(tuple(int(i) for i in reversed(index)))
        np.testing.assert_allclose(world_zyx[::-1], world_xyz, atol=1e-9)
        assert image[tuple(int(i) for i in reversed(index))] == pytest.approx(float(volume.array[index]))
    np.testing.assert_allclose(volume.world_to_index(volume.index_to_world(np.array([1.5, 2.0, 3.25]))), [1.5, 2.0, 3.25])


@pytest.mark.parametrize(("ext", "tol"), [(".nii.gz", 1e-4), (".nii", 1e-4), (".nrrd", 1e-6), (".mha", 1e-6)])
def test_file_round_trip(tmp_path: Path, ext: str, tol: float) -> None:
    """NIfTI stores its header in float32 (hence 1e-4 mm there); NRRD and MHA keep full precision."""
    volume = oblique_volume()
    path = write_volume(volume, tmp_path / f"phase{ext}")
    back = read_volume(path)
    assert_same_geometry(volume, back, tol)
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.array.dtype == np.float32


def test_write_volume_dtypes(tmp_path: Path) -> None:
    """Labels go to disk as uint8; float64 as float32; int64 as int16 when it fits."""
    volume = oblique_volume()
    label = volume.with_array((volume.array > 0).astype(np.int64), kind="label")
    assert read_volume(write_volume(label, tmp_path / "label.nii.gz")).array.dtype == np.uint8
    assert read_volume(write_volume(volume.with_array(volume.array.astype(np.float64)), tmp_path / "f.nii.gz")).array.dtype == np.float32
    hu = volume.with_array(np.round(volume.array).astype(np.int64))
    back = read_volume(write_volume(hu, tmp_path / "i.nii.gz"))
    assert back.array.dtype == np.int16
    np.testing.assert_array_equal(back.array, hu.array)
    assert read_volume(write_volume(volume.with_array(volume.array.astype(np.float16)), tmp_path / "h.nii.gz")).array.dtype == np.float32
    mask = volume.with_array(volume.array > 0, kind="label")
    np.testing.assert_array_equal(read_volume(write_volume(mask, tmp_path / "m.nii.gz")).array, mask.array.astype(np.uint8))


def test_atomic_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    write_volume(oblique_volume(), tmp_path / "PVP.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["PVP.nii.gz"]
    assert (tmp_path / "PVP.nii.gz").stat().st_mode & 0o777 != 0o600  # not mkstemp's private mode


def test_interrupted_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "PVP.nii.gz"
    old = oblique_volume()
    write_volume(old, path)
    before = path.read_bytes()

    def write_then_fail(image, name, useCompression=True):  # noqa: N803 (SimpleITK's name)
        Path(name).write_bytes(b"half a file")
        raise RuntimeError("disk full")

    monkeypatch.setattr(io.sitk, "WriteImage", write_then_fail)
    with pytest.raises(StorageError, match="could not be written .ITK: disk full"):
        write_volume(old.with_array(old.array + 1), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["PVP.nii.gz"]


def test_dicom_series_round_trip_and_missing_slice(tmp_path: Path) -> None:
    array = np.random.default_rng(0).integers(-1000, 1500, (6, 8, 9))
    files = Build.dicom_series(tmp_path / "PVP", array, spacing=(2.5, 0.7, 0.7), origin=(-300.0, 20.0, -10.0))
    volume = read_volume(tmp_path / "PVP")
    np.testing.assert_array_equal(volume.array, array)
    np.testing.assert_allclose(volume.spacing_mm, (2.5, 0.7, 0.7), atol=1e-4)
    np.testing.assert_allclose(volume.origin_mm, (-300.0, 20.0, -10.0), atol=1e-4)

    files[3].unlink()
    with pytest.raises(InputError) as err:
        read_volume(tmp_path / "PVP")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / "PVP"))
    assert "missing slice" in message and "5.00 mm" in message and "2.50 mm" in message


def test_folder_without_dicom_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "PVP").mkdir()
    (tmp_path / "PVP" / "notes.txt").write_text("not dicom")
    with pytest.raises(InputError, match="no DICOM series found"):
        read_volume(tmp_path / "PVP")


@pytest.mark.real_data
def test_real_jpeg2000_dicom_series() -> None:
    """TotalSegmentator's example: 20 slices, JPEG 2000 lossless, 2 mm apart."""
    folder = REAL_DATA / "wasserth__TotalSegmentator" / "example_ct_dicom"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    volume = read_volume(folder)
    assert volume.shape == (20, 512, 512)
    np.testing.assert_allclose(volume.spacing_mm, (2.0, 0.9765625, 0.9765625), atol=1e-4)
    np.testing.assert_allclose(volume.direction, np.eye(3), atol=1e-6)
    assert volume.array.min() <= -1000 and volume.array.max() > 500  # Hounsfield units: air and bone


@pytest.mark.real_data
def test_real_three_slice_dicom_series() -> None:
    folder = REAL_DATA / "QIICR__dcmqi" / "ct-3slice"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    volume = read_volume(folder)
    assert volume.shape == (3, 512, 512)
    np.testing.assert_allclose(volume.spacing_mm[0], 1.0, atol=1e-3)
    assert volume.array.min() < -1000


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_text("hello, not an image"), "cannot be read as an image"),
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(2000)), "cannot be read as an image"),
    ],
    ids=["empty", "text", "random-bytes"],
)
def test_unreadable_files_are_one_line(tmp_path: Path, make, match: str) -> None:
    path = tmp_path / "PVP.nii.gz"
    make(path)
    with pytest.raises(InputError, match=match) as err:
        read_volume(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_truncated_files_are_caught(tmp_path: Path, ext: str) -> None:
    """ITK reads a truncated NIfTI without complaint; we check the header's byte count."""
    path = write_volume(oblique_volume(), tmp_path / f"PVP{ext}")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputError, match="truncated") as err:
        read_volume(path)
    assert str(err.value).startswith(str(path))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        read_volume(tmp_path / "nothing.nii.gz")


def test_two_dimensional_image_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "slice.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5), np.int16)), str(path))
    with pytest.raises(InputError, match="expected a 3D image, got a 2D"):
        read_volume(path)


def test_nan_in_a_nifti_is_caught_although_simpleitk_reads_it_as_zero(tmp_path: Path) -> None:
    import nibabel as nib

    array = np.full((6, 5, 4), -500.0, np.float32)
    array[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(tmp_path / "PVP.nii.gz"))
    assert not np.isnan(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "PVP.nii.gz")))).any()  # ITK's view
    with pytest.raises(InputError, match="1 voxel\\(s\\) are NaN or Inf"):
        read_volume(tmp_path / "PVP.nii.gz")
