"""Reading and writing volumes: NIfTI, NRRD, MHA/MHD and DICOM series, through SimpleITK.

This is the only module that knows ITK orders axes ``(x, y, z)`` while :class:`Volume` orders them
``(z, y, x)``. Writes are atomic (temporary name in the same folder, then rename).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from diff4mmlits.data.volume import MAX_SPACING_MM, MIN_SPACING_MM, Volume
from diff4mmlits.errors import InputError, StorageError
from diff4mmlits.files import atomic_path, free_space_note, fsync_file

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
        raise InputError(
            f"expected a 3D image, got a {image.GetDimension()}D one of size {image.GetSize()}; "
            "give the whole volume (a 3D file or a DICOM series folder, not one slice)"
        )
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"expected one value per voxel, got {image.GetNumberOfComponentsPerPixel()} (colour or vector image); "
            "give a grey-level CT volume"
        )
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
    """Convert a :class:`Volume` to a SimpleITK image with the same geometry (bool → uint8)."""
    array = volume.array.astype(np.uint8) if volume.array.dtype == bool else volume.array
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(tuple(reversed(volume.spacing_mm)))
    image.SetOrigin(tuple(reversed(volume.origin_mm)))
    image.SetDirection(tuple(np.asarray(volume.direction)[::-1, ::-1].ravel()))
    return image


# --- reading -------------------------------------------------------------------------------
def read_volume(path: str | Path, kind: str = "image") -> Volume:
    """Read one volume from a file (NIfTI, NRRD, MHA/MHD) or a DICOM series folder.

    Raises:
        InputError: the file is missing, empty, truncated, not an image, not 3D, has a zero or
            negative spacing or a non-orthonormal direction, or a DICOM series has a gap.
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
    nifti = volume_extension(path) in (".nii", ".nii.gz")
    if nifti:
        _check_nifti_header(path)  # ITK replaces a zero pixdim by 1 and reads a truncated file without complaint
    try:
        with _quiet_itk():
            image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise _unreadable(err, path) from None
    try:
        volume = from_sitk(image, kind=kind)
    except InputError as err:
        raise InputError(err.message, path) from None
    if nifti and np.issubdtype(volume.array.dtype, np.floating) and not volume.array.all():
        _check_nifti_finite(path)  # ITK reads NaN and Inf in a NIfTI as 0: look at the file when a 0 shows up
    return volume


@contextlib.contextmanager
def itk_global(get: Callable[[], Any], set_: Callable[[Any], None], value: Any) -> Iterator[None]:
    """A SimpleITK process-wide setting (``get``/``set_`` of ``sitk.ProcessObject``) set to ``value``
    inside the block and put back after it."""
    previous = get()
    set_(value)
    try:
        yield
    finally:
        set_(previous)


def _quiet_itk() -> contextlib.AbstractContextManager:
    """Silence ITK's multi-line warnings on stderr while reading (problems are reported our way)."""
    return itk_global(sitk.ProcessObject.GetGlobalWarningDisplay, sitk.ProcessObject.SetGlobalWarningDisplay, False)


def _unreadable(err: RuntimeError, path: Path) -> InputError:
    """The one-line error for a file ITK refused to read."""
    reason = first_itk_line(err)
    if "orthonormal" in reason:
        return InputError(
            "the direction matrix is not orthonormal (sheared or scaled axes), so the file cannot be read "
            "as a CT volume; fix the header (re-export it from the scanner or converter)",
            path,
        )
    return InputError(
        f"cannot be read as an image: it is truncated, corrupt or not an image file (ITK: {reason}); re-export it",
        path,
    )


def _raw_nifti_header(path: Path):
    """The NIfTI-1/2 header exactly as stored (``nib.load`` would quietly 'fix' a zero pixdim)."""
    import nibabel as nib
    from nibabel.openers import ImageOpener
    from nibabel.spatialimages import HeaderDataError

    try:
        with ImageOpener(str(path)) as handle:
            raw = handle.read(540)
    except (OSError, EOFError, zlib.error) as err:
        reason = "not gzip-compressed although it ends in .gz" if isinstance(err, gzip.BadGzipFile) else str(err)
        raise _not_an_image(path, reason) from None
    size = next((n for n in (int.from_bytes(raw[:4], "little"), int.from_bytes(raw[:4], "big")) if n in (348, 540)), None)
    if size is None or len(raw) < size:
        raise _not_an_image(path, "no NIfTI header")
    try:
        header = (nib.Nifti1Header if size == 348 else nib.Nifti2Header).from_fileobj(io.BytesIO(raw[:size]), check=False)
    except (HeaderDataError, ValueError) as err:
        raise _not_an_image(path, str(err)) from None
    if bytes(header["magic"]).rstrip(b"\0") not in (b"n+1", b"n+2"):
        raise _not_an_image(path, "no NIfTI magic string")
    return header


def _not_an_image(path: Path, reason: str) -> InputError:
    return InputError(f"cannot be read as an image: it is truncated, corrupt or not an image file ({reason}); re-export it", path)


def _check_nifti_header(path: Path) -> None:
    """Header checks ITK does not make: every pixdim is positive and the data is complete."""
    header = _raw_nifti_header(path)
    ndim = int(header["dim"][0])
    pixdim = [float(v) for v in header["pixdim"][1 : min(ndim, 3) + 1]]
    if any(not np.isfinite(v) or v <= 0 for v in pixdim):
        shown = tuple(round(v, 4) for v in reversed(pixdim))
        raise InputError(
            f"absurd voxel spacing {shown} mm in the header (must be ≥ {MIN_SPACING_MM:g} and ≤ {MAX_SPACING_MM:g} mm); "
            "fix the header",
            path,
        )
    placement = [header[key] for key, code in (("srow_x", "sform_code"), ("srow_y", "sform_code"),
                                               ("srow_z", "sform_code"), ("qoffset_x", "qform_code"),
                                               ("qoffset_y", "qform_code"), ("qoffset_z", "qform_code"))
                 if int(header[code]) > 0]
    if not all(np.isfinite(np.asarray(value, dtype=float)).all() for value in placement):
        # ITK would report the direction as not orthonormal: a NaN in the affine spoils both
        raise InputError("the origin is not a finite position (NaN or Inf in the header's affine); fix the header",
                         path)
    shape = [int(v) for v in header["dim"][1 : ndim + 1]]
    expected = int(header["vox_offset"]) + int(np.prod(shape)) * int(header["bitpix"]) // 8
    actual = _nifti_data_bytes(path, expected)
    if actual < expected:
        raise InputError(
            f"the file is truncated: it holds {actual} of the {expected} bytes its header announces; re-export or re-download it",
            path,
        )


def _check_nifti_finite(path: Path) -> None:
    """Raise when a float NIfTI holds NaN or Inf (read with nibabel: ITK would show them as 0)."""
    import nibabel as nib

    data = np.asanyarray(nib.load(str(path)).dataobj)
    bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise InputError(f"{bad} voxel(s) are NaN or Inf; fix or re-export the image", path)


def _nifti_data_bytes(path: Path, expected: int) -> int:
    """Bytes of (uncompressed) NIfTI in ``path``, up to where a broken gzip stream ends."""
    if not path.name.lower().endswith(".gz"):
        return path.stat().st_size
    with path.open("rb") as handle:  # the gzip trailer holds the size mod 2**32: cheap when intact
        handle.seek(-4, 2)
        if int.from_bytes(handle.read(4), "little") == expected % 2**32:
            return expected
        handle.seek(0)
        stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
        total = 0
        try:
            while chunk := handle.read(1 << 20):
                while chunk:
                    total += len(stream.decompress(chunk))
                    chunk = b""
                    if stream.eof and stream.unused_data:  # a multi-member gzip (bgzip, pigz -i)
                        chunk = stream.unused_data
                        stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
        except zlib.error:
            return min(total, expected - 1)
        return total if stream.eof else min(total, expected - 1)


def holds_dicom_series(folder: str | Path) -> bool:
    """``folder`` holds the files of a DICOM series itself (GDCM finds a series there). Quiet: GDCM's
    "No Series were found" warning is not printed for the folders that hold none."""
    try:
        with _quiet_itk():
            return bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    except RuntimeError:
        return False


def read_dicom_series(folder: str | Path, kind: str = "image") -> Volume:
    """Read the (single) DICOM series in ``folder``, checking for missing slices.

    Raises:
        InputError: no series, several series, unreadable files or a gap between slices.
    """
    folder = Path(folder)
    try:
        with _quiet_itk():
            series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError:
        series_ids = ()
    if not series_ids:
        raise InputError("no DICOM series found in this folder; put the series' .dcm files in it", folder)
    if len(series_ids) > 1:
        raise InputError(f"holds {len(series_ids)} DICOM series; put each series in a folder of its own", folder)
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_ids[0])
    if len(files) < 2:
        raise InputError(f"the DICOM series has {len(files)} slice(s); a volume needs at least 2", folder)
    _check_dicom_slice_gaps(folder, files)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        with _quiet_itk():
            image = reader.Execute()
    except RuntimeError as err:
        raise InputError(f"DICOM series cannot be read ({first_itk_line(err)}); re-export the series", folder) from None
    try:
        return from_sitk(image, kind=kind)
    except InputError as err:
        raise InputError(err.message, folder) from None


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
            raise InputError(f"unreadable DICOM file ({first_itk_line(err)}); remove or re-export it", name) from None
        if not reader.HasMetaDataKey("0020|0032"):
            return  # no positions recorded: nothing to check
        try:
            position = np.array([float(v) for v in reader.GetMetaData("0020|0032").split("\\")], dtype=np.float64)
        except ValueError:
            raise InputError("unreadable Image Position (0020,0032) tag; re-export the series", name) from None
        if position.shape != (3,):
            raise InputError("the Image Position (0020,0032) tag does not hold 3 numbers; re-export the series", name)
        if normal is None:
            direction = np.asarray(reader.GetDirection()).reshape(3, 3)
            normal = direction[:, 2]
        positions.append(float(position @ normal))
    steps = np.diff(np.sort(np.asarray(positions)))
    if len(steps) == 0:
        return
    typical = float(np.median(steps))
    if typical <= 0 or (steps < 1e-3 * typical).any():
        raise InputError("several DICOM slices share one position (duplicate slices); keep one file per slice", folder)
    gaps = np.nonzero(steps > 1.5 * typical)[0]
    if len(gaps):
        raise InputError(
            f"DICOM series has a missing slice: a gap of {steps[gaps[0]]:.2f} mm where slices are "
            f"{typical:.2f} mm apart ({len(gaps)} gap(s)); re-export the complete series",
            folder,
        )


def first_itk_line(err: Exception) -> str:
    """The informative line of a (multi-line) ITK exception, without object addresses (at most 200 characters).

    Its ``Description:``, else the text after ``sitk::ERROR:`` / ``ITK ERROR:`` without the
    ``Class(0x…):`` prefix, else its last line.
    """
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if "Description:" in line:
            return line.split("Description:", 1)[1].strip()[:200]
    for line in lines:
        for marker in ("sitk::ERROR:", "ITK ERROR:"):
            if marker in line:
                text = line.split(marker, 1)[1].strip()
                return re.sub(r"^\w+\(0x[0-9a-f]+\):\s*", "", text)[:200]
    return lines[-1][:200] if lines else "unknown reason"


# --- writing -------------------------------------------------------------------------------
def write_volume(volume: Volume, path: str | Path) -> Path:
    """Write a volume as NIfTI (or any SimpleITK format by extension), atomically.

    Labels are written as uint8; images keep their dtype (float64 and float16 are stored as
    float32, int64 as int16 when the values fit).
    """
    path = Path(path)
    array = volume.array
    if volume.kind == "label":
        array = array.astype(np.uint8)
    elif array.dtype in (np.float64, np.float16):
        array = array.astype(np.float32)
    elif array.dtype == np.int64 and array.size and -32768 <= array.min() and array.max() <= 32767:
        array = array.astype(np.int16)
    image = to_sitk(volume.with_array(array))
    with atomic_path(path) as tmp:
        write_image_checked(image, tmp, path)
    return path


def write_image_checked(image: sitk.Image, tmp: Path, path: Path) -> None:
    """``sitk.WriteImage`` into ``tmp`` (the temporary name of ``path``), then read back what is on
    disk: SimpleITK does not raise when the disk fills up, it leaves a short file. A short or
    unreadable file is a :class:`StorageError` naming ``path`` (which is left as it was)."""
    try:
        sitk.WriteImage(image, str(tmp), useCompression=True)
    except RuntimeError as err:
        raise StorageError(f"could not be written (ITK: {first_itk_line(err)}){free_space_note(path)}; check that the "
                           "folder is writable and has space, then rerun", path) from None
    fsync_file(tmp)
    if tmp.name.lower().endswith((".nii", ".nii.gz")):
        try:
            header = _raw_nifti_header(tmp)
        except InputError:
            raise StorageError(f"was not written: no readable header on disk{free_space_note(path)}; free some space "
                               "and rerun", path) from None
        ndim = int(header["dim"][0])
        shape = [int(v) for v in header["dim"][1 : ndim + 1]]
        expected = int(header["vox_offset"]) + int(np.prod(shape)) * int(header["bitpix"]) // 8
        written = _nifti_data_bytes(tmp, expected)
        if written < expected or int(np.prod(shape)) != image.GetNumberOfPixels() * image.GetNumberOfComponentsPerPixel():
            raise StorageError(f"was not written completely ({written} of {expected} bytes){free_space_note(path)}; free "
                               "some space and rerun", path)
        return
    try:  # other formats (MetaImage, NRRD…): read the whole file back, they are rare and small
        with _quiet_itk():
            back = sitk.ReadImage(str(tmp))
    except RuntimeError:
        raise StorageError(f"was not written: unreadable on disk{free_space_note(path)}; free some space and rerun", path) from None
    if tuple(back.GetSize()) != tuple(image.GetSize()):
        raise StorageError(f"was not written completely{free_space_note(path)}; free some space and rerun", path)


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
        write_image_checked(image, tmp, path)
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
        raise InputError(f"cannot be read as an image ({first_itk_line(err)})", path) from None
    try:
        return displacement_from_sitk(image)
    except InputError as err:
        raise InputError(str(err), path) from None
