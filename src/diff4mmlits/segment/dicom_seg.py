"""DICOM-SEG output of ``predict --output-type dicom-seg`` (highdicom, an optional dependency).

The segmentation object references the input DICOM series, frame by frame, so that 3D Slicer
(QuantitativeReporting), OHIF or a PACS shows liver and tumor over the series they came from.
Segment 1 is the liver (SCT 10200004), segment 2 the tumor (SCT 108369006, neoplasm).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from diff4mmlits import LABEL_LIVER, LABEL_TUMOR
from diff4mmlits.data.volume import Volume
from diff4mmlits.errors import InputError
from diff4mmlits.files import write_bytes_atomic

INSTALL_HINT = "DICOM-SEG output needs highdicom: pip install highdicom (then rerun)"


def _highdicom():
    try:
        import highdicom
        import pydicom
    except ImportError:
        raise InputError(INSTALL_HINT) from None
    return highdicom, pydicom


def series_files(folder: Path) -> list[str]:
    """The series' files in the order SimpleITK reads them (that of the label's slices)."""
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not ids:
        raise InputError("--output-type dicom-seg needs a DICOM series as input; this is not one", folder)
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), ids[0]))


def _referenceable(dataset, file: str, series_folder: str | Path):
    """``dataset`` made fit to be a SEG's source: its SOP Class and Instance UIDs taken from the file
    meta header where the data set's own are blank (some anonymisers and converters blank them; the
    SEG must reference both), and a blank Specific Character Set removed (it then means the default
    repertoire, as the standard reads an absent one; highdicom refuses the blank value)."""
    if "SpecificCharacterSet" in dataset and not str(dataset.SpecificCharacterSet or "").strip():
        del dataset.SpecificCharacterSet
    meta = getattr(dataset, "file_meta", None)
    for own, stored in (("SOPClassUID", "MediaStorageSOPClassUID"), ("SOPInstanceUID", "MediaStorageSOPInstanceUID")):
        if not str(dataset.get(own, "") or "").strip():
            value = str((meta.get(stored, "") if meta is not None else "") or "").strip()
            if not value:
                raise InputError(f"{Path(file).name} has no {own}: a DICOM-SEG cannot reference it; use --output-type "
                                 "nifti", series_folder)
            setattr(dataset, own, value)
    return dataset


def write_dicom_seg(label: Volume, series_folder: str | Path, path: str | Path) -> Path:
    """Write ``label`` (on the series' own grid) as a binary DICOM-SEG referencing the series."""
    hd, pydicom = _highdicom()
    from diff4mmlits import __version__

    files = series_files(Path(series_folder))
    sources = [_referenceable(pydicom.dcmread(f), f, series_folder) for f in files]
    if len(sources) != label.shape[0]:
        raise InputError(f"the label has {label.shape[0]} slices, the series {len(sources)}; give the series "
                         "the label was predicted on", series_folder)
    codes = hd.sr.CodedConcept
    algorithm = hd.AlgorithmIdentificationSequence(
        name="diff4mmlits", version=__version__,
        family=codes("123109", "DCM", "Artificial Intelligence"))
    segments = [
        hd.seg.SegmentDescription(
            segment_number=number, segment_label=name,
            segmented_property_category=codes(category[0], "SCT", category[1]),
            segmented_property_type=codes(kind[0], "SCT", kind[1]),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm)
        for number, name, category, kind in (
            (1, "liver", ("123037004", "Anatomical Structure"), ("10200004", "Liver")),
            (2, "tumor", ("49755003", "Morphologically Altered Structure"), ("108369006", "Neoplasm")),
        )
    ]
    mask = np.stack([label.array == LABEL_LIVER, label.array == LABEL_TUMOR], axis=-1).astype(np.uint8)
    with warnings.catch_warnings():  # pydicom's advice on the source's person names is not the user's to act on
        warnings.filterwarnings("ignore", message=".*person name.*")
        seg = _segmentation(hd, sources, mask, segments)
    buffer = io.BytesIO()
    seg.save_as(buffer)
    return write_bytes_atomic(path, buffer.getvalue())


def _segmentation(hd, sources: list, mask: np.ndarray, segments: list):
    """highdicom's binary Segmentation of ``mask`` ``(slices, rows, columns, 2)`` over ``sources``."""
    from diff4mmlits import __version__

    return hd.seg.Segmentation(
        source_images=sources, pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments, series_instance_uid=hd.UID(), series_number=900,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="diff4mmlits",
        manufacturer_model_name="diff4mmlits", software_versions=__version__, device_serial_number="0",
        series_description="diff4mmlits liver and tumor", omit_empty_frames=False)
