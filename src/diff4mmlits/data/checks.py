"""The individual validation checks behind :func:`diff4mmlits.data.validate.validate_dataset`.

Each check looks at one thing and returns problems; none raises for bad data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diff4mmlits import LABEL_LIVER, LABEL_TUMOR
from diff4mmlits.data.case import Case
from diff4mmlits.data.dataset import detect_layout, load_dataset
from diff4mmlits.data.native import list_case_folders, read_case_folder
from diff4mmlits.data.validate import Problem, ValidationReport, case_row
from diff4mmlits.data.volume import Volume, grid_mismatch
from diff4mmlits.errors import InputError

MAX_SPACING_MM = 20.0


def check_image_values(volume: Volume, where: str) -> list[Problem]:
    """NaN/Inf, and intensities that do not look like Hounsfield units."""
    problems: list[Problem] = []
    array = volume.array
    if array.size == 0:
        return [Problem("error", where, "the image holds no voxels; re-export it")]
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        count = int(np.count_nonzero(~np.isfinite(array)))
        problems.append(Problem("error", where, f"{count} voxel(s) are NaN or Inf; fix or re-export the image"))
        return problems
    low, high = float(np.min(array)), float(np.max(array))
    if high - low < 1e-6:
        problems.append(Problem("error", where, f"the image is constant ({low:g}); it holds no anatomy"))
    elif np.issubdtype(array.dtype, np.floating) and low >= -1e-6 and high <= 1.0 + 1e-6:
        problems.append(Problem("error", where, f"intensities lie in [{low:.3g}, {high:.3g}], not Hounsfield units; give the CT in HU (air ≈ −1000)"))
    elif low >= 0 and high <= 255 and array.dtype in (np.uint8, np.int8) or (low >= 0 and high <= 255 and np.issubdtype(array.dtype, np.integer) and high > 1):
        problems.append(Problem("error", where, f"intensities lie in [{low:g}, {high:g}] (8-bit image?), not Hounsfield units; give the CT in HU (air ≈ −1000)"))
    return problems


def check_geometry(volume: Volume, where: str) -> list[Problem]:
    """Spacing must be positive and at most 20 mm; the direction orthonormal."""
    problems: list[Problem] = []
    spacing = np.asarray(volume.spacing_mm)
    if (spacing <= 0).any() or (spacing > MAX_SPACING_MM).any():
        problems.append(Problem("error", where, f"absurd voxel spacing {tuple(round(float(s), 4) for s in spacing)} mm (must be > 0 and ≤ {MAX_SPACING_MM:g} mm); fix the header"))
    direction = np.asarray(volume.direction)
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-3):
        problems.append(Problem("error", where, "the direction matrix is not orthonormal (sheared or scaled axes); fix the header"))
    if min(volume.shape) < 2:
        problems.append(Problem("error", where, f"shape {volume.shape} is not a 3D volume (an axis has fewer than 2 voxels)"))
    return problems


def check_label(label: Volume, annotated: Volume, where: str, annotated_phase: str) -> list[Problem]:
    """Label values in {0, 1, 2}, integer, on the annotated phase's grid; tumors inside the liver."""
    problems: list[Problem] = []
    array = label.array
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.equal(np.mod(array, 1), 0)):
        problems.append(Problem("error", where, "label holds non-integer values; a label must hold 0 (background), 1 (liver), 2 (tumor)"))
        return problems
    values = set(np.unique(array).astype(int).tolist())
    extra = sorted(values - {0, LABEL_LIVER, LABEL_TUMOR})
    if extra:
        problems.append(Problem("error", where, f"label values {extra} are outside {{0, 1, 2}}; map them to 0 background, 1 liver, 2 tumor"))
    problem = grid_mismatch(label, annotated)
    if problem is not None:
        problems.append(Problem("error", where, f"label grid differs from {annotated_phase}: {problem}; resample the label onto {annotated_phase}"))
    return problems


def check_tumor_inside_liver(case: Case, where: str) -> list[Problem]:
    """A tumor component that touches no liver voxel is suspicious (warning)."""
    from scipy import ndimage

    if case.label is None:
        return []
    tumor = case.label.array == LABEL_TUMOR
    if not tumor.any():
        return []
    liver = case.label.array == LABEL_LIVER
    components, count = ndimage.label(tumor)
    touching = ndimage.binary_dilation(liver)
    outside = [i for i in range(1, count + 1) if not touching[components == i].any()]
    if outside:
        return [Problem("warning", where, f"{len(outside)} tumor component(s) lie outside the liver; check the label")]
    return []


def check_phases_overlap(case: Case, where: str) -> list[Problem]:
    """Every phase must overlap the annotated phase in physical space."""
    problems: list[Problem] = []
    lo_a, hi_a = case.annotated.world_bounds_mm()
    for name, volume in case.phases.items():
        if name == case.annotated_phase:
            continue
        lo, hi = volume.world_bounds_mm()
        overlap = np.minimum(hi, hi_a) - np.maximum(lo, lo_a)
        if (overlap <= 0).any():
            problems.append(Problem("error", f"{where}/{name}", f"does not overlap {case.annotated_phase} in physical space (check origin and direction); registration needs overlapping scans"))
    return problems


def check_case(case: Case, where: str) -> list[Problem]:
    """All per-case checks on a case that could be read."""
    problems: list[Problem] = []
    for name, volume in case.phases.items():
        problems += check_geometry(volume, f"{where}/{name}")
        problems += check_image_values(volume, f"{where}/{name}")
    if case.label is not None:
        problems += check_label(case.label, case.annotated, f"{where}/label", case.annotated_phase)
        problems += check_tumor_inside_liver(case, f"{where}/label")
    problems += check_phases_overlap(case, where)
    return problems


def check_dataset(dataset: Path, annotated_phase: str = "PVP", require_label: bool = True) -> ValidationReport:
    """Read and check every case; problems are collected, never raised."""
    report = ValidationReport(dataset=dataset)
    try:
        layout = detect_layout(dataset)
    except InputError as err:
        report.problems.append(Problem("error", str(dataset), str(err).split(": ", 1)[-1]))
        return report
    if layout != "native":
        try:
            cases = load_dataset(dataset, require_label=require_label)
        except InputError as err:
            report.problems.append(Problem("error", str(dataset), str(err)))
            return report
        for case in cases:
            report.rows.append(case_row(case))
            report.problems += check_case(case, f"{dataset}/{case.case_id}")
        return report
    folders = list_case_folders(dataset)
    if not folders:
        report.problems.append(Problem("error", str(dataset), "empty dataset: no case folders found (expected DATASET/<case>/PVP.nii.gz)"))
        return report
    for folder in folders:
        try:
            case = read_case_folder(folder, annotated_phase=annotated_phase, require_label=require_label)
        except InputError as err:
            text = str(err)
            path, _, message = text.partition(": ")
            report.problems.append(Problem("error", path if message else str(folder), message or text))
            continue
        report.rows.append(case_row(case))
        report.problems += check_case(case, str(folder))
    return report
