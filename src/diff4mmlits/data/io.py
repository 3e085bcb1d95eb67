"""Reading and writing volumes: NIfTI, NRRD, MHA/MHD and DICOM series, through SimpleITK.

This is the only module that knows ITK orders axes ``(x, y, z)`` while :class:`Volume` orders them
``(z, y, x)``. Writes are atomic (temporary name in the same folder, then rename).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from diff4mmlits.data.volume import Volume
from diff4mmlits.errors import InputError
from diff4mmlits.files import atomic_path

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
"""File endings read as volumes (a DICOM series is a folder)."""


def volume_extension(path: str | Path) -> str | None:
    """The image extension of ``path`` (``".nii.gz"``, ``".nrrd"``…) or ``None``."""
    name = Path(path).name.lower()
    for ext in IMAGE_EXTENSIONS:
        if name.endswith(ext):
            return ext
    return None


def strip_extension(path: str | Path) -> str:
    """``case/AP.nii.gz`` → ``AP``; names without an image extension keep their full name."""
    name = Path(path).name
    ext = volume_extension(name)
    return name[: -len(ext)] if ext else name


# --- SimpleITK conversion ------------------------------------------------------------------
def from_sitk(image: sitk.Image, kind: str = "image") -> Volume:
    """Convert a 3D SimpleITK image to a :class:`Volume` (lossless: geometry kept exactly)."""
    if image.GetDimension() != 3:
        raise InputError(f"expected a 3D image, got {image.GetDimension()}D of size {image.GetSize()}")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"expected one value per voxel, got {image.GetNumberOfComponentsPerPixel()} (colour or vector image)")
    array = sitk.GetArrayFromImage(image)  # (z, y, x)
    direction_xyz = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    return Volume(
        array=array,
        spacing_mm=tuple(reversed(image.GetSpacing())),
        origin_mm=tuple(reversed(image.GetOrigin())),
        direction=direction_xyz[::-1, ::-1].copy(),
        kind=kind,  # type: ignore[arg-type]
    )


def to_sitk(volume: Volume) -> sitk.Image:
    """Convert a :class:`Volume` to a SimpleITK image with the same geometry."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array))
    image.SetSpacing(tuple(reversed(volume.spacing_mm)))
    image.SetOrigin(tuple(reversed(volume.origin_mm)))
    image.SetDirection(tuple(np.asarray(volume.direction)[::-1, ::-1].ravel()))
    return image


# --- reading -------------------------------------------------------------------------------
def read_volume(path: str | Path, kind: str = "image") -> Volume:
    """Read one volume from a file (NIfTI, NRRD, MHA/MHD) or a DICOM series folder.

    Raises:
        InputError: the file is missing, unreadable, not 3D, or a DICOM series has a gap.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("file not found; check the path", path)
    if path.is_dir():
        return read_dicom_series(path, kind=kind)
    if path.stat().st_size == 0:
        raise InputError("the file is empty (0 bytes); re-export it", path)
    if volume_extension(path) is None and path.suffix.lower() not in (".dcm", ""):
        raise InputError(f"not a volume file (expected one of {', '.join(IMAGE_EXTENSIONS)} or a DICOM folder)", path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        reason = _first_itk_line(err)
        raise InputError(f"cannot be read as an image ({reason}); is it truncated or of another format?", path) from None
    try:
        volume = from_sitk(image, kind=kind)
    except InputError as err:
        raise InputError(str(err), path) from None
    return volume


def read_dicom_series(folder: str | Path, kind: str = "image") -> Volume:
    """Read the (single) DICOM series in ``folder``, checking for missing slices.

    Raises:
        InputError: no series, several series, unreadable files or a gap between slices.
    """
    folder = Path(folder)
    try:
        series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError:
        series_ids = ()
    if not series_ids:
        raise InputError("no DICOM series found in this folder", folder)
    if len(series_ids) > 1:
        raise InputError(f"holds {len(series_ids)} DICOM series; put each series in a folder of its own", folder)
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_ids[0])
    if len(files) < 2:
        raise InputError(f"the DICOM series has {len(files)} slice(s); a volume needs at least 2", folder)
    _check_dicom_slice_gaps(folder, files)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as err:
        raise InputError(f"DICOM series cannot be read ({_first_itk_line(err)})", folder) from None
    return from_sitk(image, kind=kind)


def _check_dicom_slice_gaps(folder: Path, files: tuple[str, ...]) -> None:
    """Raise when slice positions along the slice normal are not evenly spaced (a missing slice)."""
    positions = []
    normal = None
    for name in files:
        reader = sitk.ImageFileReader()
        reader.SetFileName(name)
        try:
            reader.ReadImageInformation()
        except RuntimeError as err:
            raise InputError(f"unreadable DICOM file ({_first_itk_line(err)})", name) from None
        if not reader.HasMetaDataKey("0020|0032"):
            return  # no positions recorded: nothing to check
        position = np.array([float(v) for v in reader.GetMetaData("0020|0032").split("\\")])
        if normal is None:
            direction = np.asarray(reader.GetDirection()).reshape(3, 3)
            normal = direction[:, 2]
        positions.append(float(position @ normal))
    steps = np.diff(np.sort(np.asarray(positions)))
    if len(steps) == 0:
        return
    typical = float(np.median(steps))
    if typical <= 0:
        raise InputError("DICOM slices share the same position; the series holds duplicates", folder)
    gaps = np.nonzero(steps > 1.5 * typical)[0]
    if len(gaps):
        raise InputError(
            f"DICOM series has a missing slice: a gap of {steps[gaps[0]]:.2f} mm where slices are "
            f"{typical:.2f} mm apart ({len(gaps)} gap(s)); re-export the complete series",
            folder,
        )


def _first_itk_line(err: Exception) -> str:
    """The informative line of a (multi-line) ITK exception."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if "Description:" in line:
            return line.split("Description:", 1)[1].strip()
    for line in reversed(lines):
        if not line.startswith(("sitk::ERROR", "itk::ERROR")):
            return line[:200]
    return lines[-1][:200] if lines else "unknown reason"


# --- writing -------------------------------------------------------------------------------
def write_volume(volume: Volume, path: str | Path) -> Path:
    """Write a volume as NIfTI (or any SimpleITK format by extension), atomically.

    Labels are written as uint8; images keep their dtype (float64 is stored as float32, int64 as
    int16 when the values fit).
    """
    path = Path(path)
    array = volume.array
    if volume.kind == "label":
        array = array.astype(np.uint8)
    elif array.dtype == np.float64:
        array = array.astype(np.float32)
    elif array.dtype == np.int64 and array.size and -32768 <= array.min() and array.max() <= 32767:
        array = array.astype(np.int16)
    image = to_sitk(volume.with_array(array))
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)
    return path


# --- displacement fields -------------------------------------------------------------------
def displacement_to_sitk(displacement_mm: np.ndarray, grid: Volume) -> sitk.Image:
    """A ``(Z, Y, X, 3)`` field with ``(z, y, x)`` components (mm) on ``grid`` → a SimpleITK vector image.

    The result has ``(x, y, z)`` components, float64 and ``grid``'s geometry: what
    ``sitk.DisplacementFieldTransform`` takes (ITK convention: output point ``p`` maps to ``p + d(p)``).
    """
    displacement_mm = np.asarray(displacement_mm, dtype=np.float64)
    if displacement_mm.shape != (*grid.shape, 3):
        raise ValueError(f"displacement shape {displacement_mm.shape} does not match the grid {grid.shape} + (3,)")
    image = sitk.GetImageFromArray(np.ascontiguousarray(displacement_mm[..., ::-1]), isVector=True)
    image.SetSpacing(tuple(reversed(grid.spacing_mm)))
    image.SetOrigin(tuple(reversed(grid.origin_mm)))
    image.SetDirection(tuple(np.asarray(grid.direction)[::-1, ::-1].ravel()))
    return image


def displacement_from_sitk(image: sitk.Image) -> tuple[np.ndarray, Volume]:
    """A 3-component SimpleITK vector image → (``(Z, Y, X, 3)`` float64 field with ``(z, y, x)`` components in mm, its grid)."""
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 3:
        raise InputError(
            f"a displacement field is a 3D image with 3 components per voxel, got {image.GetDimension()}D "
            f"with {image.GetNumberOfComponentsPerPixel()}"
        )
    field = sitk.GetArrayFromImage(image).astype(np.float64)[..., ::-1].copy()
    direction_xyz = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    grid = Volume(
        array=np.zeros(field.shape[:3], dtype=np.uint8),
        spacing_mm=tuple(reversed(image.GetSpacing())),
        origin_mm=tuple(reversed(image.GetOrigin())),
        direction=direction_xyz[::-1, ::-1].copy(),
        kind="label",
    )
    return field, grid


def write_displacement_field(displacement_mm: np.ndarray, grid: Volume, path: str | Path) -> Path:
    """Write a displacement field (``(Z, Y, X, 3)``, ``(z, y, x)`` components, mm, on ``grid``) atomically.

    On disk it is an ITK vector image of float64 ``(x, y, z)`` components (NIfTI intent "vector"),
    which ``sitk.DisplacementFieldTransform(sitk.ReadImage(path))`` and 3D Slicer load directly.
    """
    path = Path(path)
    image = displacement_to_sitk(displacement_mm, grid)
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)
    return path


def read_displacement_field(path: str | Path) -> tuple[np.ndarray, Volume]:
    """Read a displacement field written by :func:`write_displacement_field` (or any ITK vector field).

    Returns ``(field, grid)``: ``field`` is ``(Z, Y, X, 3)`` float64 with ``(z, y, x)`` components in
    mm; ``grid`` is an empty label volume carrying the field's geometry.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("displacement field not found; check the path", path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise InputError(f"cannot be read as an image ({_first_itk_line(err)})", path) from None
    try:
        return displacement_from_sitk(image)
    except InputError as err:
        raise InputError(str(err), path) from None
