"""`CaseFiles`: where one case's volumes lie on disk, whatever the dataset layout.

Every layout (native, nnU-Net v2 raw, LiTS / MSD) lists its cases as :class:`CaseFiles`; one
reader (:func:`read_case_files`) turns them into :class:`Case` objects and the validator checks the
same files one by one, so reading and validation never disagree about a dataset.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diff4mmlits.data.case import ANNOTATED_PHASE, Case
from diff4mmlits.data.checks import Problem, check_geometry, check_image_values, check_label_values, check_overlap
from diff4mmlits.data.io import holds_dicom_series, read_volume
from diff4mmlits.data.volume import Volume
from diff4mmlits.errors import InputError
from diff4mmlits.threads import thread_budget


@dataclass(frozen=True)
class CaseFiles:
    """The files of one case.

    Attributes:
        case_id: the case's name.
        location: the case folder (native layout) or the dataset folder (flat layouts); named in
            messages about the case as a whole.
        phases: canonical phase name → image file or DICOM series folder.
        label: the label file, or ``None``.
        extras: other volumes on the label's grid (e.g. ``inpaint_mask``), read as labels.
        issues: ``(file, message)`` problems found while listing (unknown phase name, a phase given
            twice, an unsupported file); reading raises the first, validation reports them all.
        label_ids: file label id → our id (0, 1, 2) when the layout numbers classes differently.
        expected: where a missing phase or label (key ``"label"``) should be, in layouts that
            name files by case (nnU-Net, LiTS); messages then name that file.
    """

    case_id: str
    location: Path
    phases: Mapping[str, Path]
    label: Path | None = None
    extras: Mapping[str, Path] = field(default_factory=dict)
    issues: tuple[tuple[Path, str], ...] = ()
    label_ids: Mapping[int, int] | None = None
    expected: Mapping[str, Path] = field(default_factory=dict)

    def missing(self, annotated_phase: str = ANNOTATED_PHASE, require_label: bool = True) -> list[tuple[Path, str]]:
        """Problems of the listing itself: an empty case, no annotated phase, no label."""
        if not self.phases and self.label is None and not self.issues:
            if self.location.is_dir() and holds_dicom_series(self.location):
                return [(self.location, "holds a DICOM series itself, not one file or DICOM folder per phase: give this folder "
                                        f"to predict on its own, or move the series into {self.location.name}/{annotated_phase}/")]
            return [(self.location, "empty case folder: no image files (.nii.gz, .nii, .nrrd, .mha, .mhd or a DICOM folder); add the phases or remove the folder")]
        problems: list[tuple[Path, str]] = []
        if annotated_phase not in self.phases:
            if annotated_phase in self.expected:
                problems.append((self.expected[annotated_phase], f"file not found: case {self.case_id} has no {annotated_phase} image (the annotated phase); add it"))
            else:
                present = ", ".join(sorted(self.phases)) or "none"
                problems.append((self.location, f"the annotated phase {annotated_phase} is missing (found: {present}); add {annotated_phase}.nii.gz (the phase the label is drawn on)"))
        if require_label and self.label is None:
            if "label" in self.expected:
                problems.append((self.expected["label"], f"file not found: case {self.case_id} has no label; add it (0 background, 1 liver, 2 tumor on the {annotated_phase} grid)"))
            else:
                problems.append((self.location, f"no label file; add label.nii.gz on the {annotated_phase} grid (0 background, 1 liver, 2 tumor)"))
        return problems


def read_label(path: Path, label_ids: Mapping[int, int] | None = None) -> Volume:
    """Read a label map as ``uint8`` ids 0/1/2, checking its values (renumbered by ``label_ids``)."""
    label = read_volume(path, kind="label")
    if label_ids is not None:
        label = renumber_label(label, label_ids, path)
    problems = check_label_values(label, path)
    if problems:
        raise InputError(problems[0].message, path)
    return label.with_array(label.array.astype(np.uint8))


def renumber_label(label: Volume, label_ids: Mapping[int, int], path: Path) -> Volume:
    """Map a layout's class ids to ours; values it does not list are left for the value check."""
    array = label.array
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.equal(np.mod(array[np.isfinite(array)], 1), 0)):
        return label  # non-integer: the value check says so
    if all(source == target for source, target in label_ids.items()):
        return label
    out = np.array(array, dtype=np.int64, copy=True)
    for source, target in label_ids.items():
        out[array == source] = target
    unlisted = np.setdiff1d(np.unique(array), np.asarray(list(label_ids), dtype=array.dtype))
    if unlisted.size:
        raise InputError(f"label values {unlisted.astype(int).tolist()[:8]} are not listed in dataset.json 'labels'; list or remove them", path)
    return label.with_array(out)


def read_case_files(files: CaseFiles, annotated_phase: str = ANNOTATED_PHASE, require_label: bool = True) -> Case:
    """Read one case (images in HU as stored, label as ``uint8``) through the validation checks:
    the first error raises :class:`InputError` (warnings are left to ``diff4mmlits validate``)."""
    for path, message in files.issues:
        raise InputError(message, path)
    for path, message in files.missing(annotated_phase, require_label):
        raise InputError(message, path)
    phases = dict(zip(files.phases, _map_in_threads(read_checked_image, list(files.phases.values()))))
    label = None
    if files.label is not None:
        label = read_label(files.label, files.label_ids)
        _raise_first_error(check_geometry(label, files.label))
    extras = {name: read_volume(path, kind="label") for name, path in files.extras.items()}
    try:
        case = Case(case_id=files.case_id, phases=phases, label=label, annotated_phase=annotated_phase, extras=extras)
    except InputError as err:
        raise InputError(err.message.replace(f"{files.case_id}: ", "", 1), files.label or files.location) from None
    for name, volume in case.phases.items():
        if name != annotated_phase:
            _raise_first_error(check_overlap(volume, case.annotated, files.phases[name], annotated_phase))
    return case


def read_checked_image(path: Path) -> Volume:
    """A CT image read through the checks every phase of a case gets (:func:`checked_image`)."""
    return checked_image(read_volume(path), path)


def checked_image(volume: Volume, where: str | Path) -> Volume:
    """``volume`` when its geometry and values are those of a CT in HU (``checks.check_geometry``,
    ``checks.check_image_values``); else :class:`InputError` naming ``where`` (warnings are left to
    ``diff4mmlits validate``, and to ``predict``, whose input must be CT: a translator's MRI is not)."""
    _raise_first_error(check_geometry(volume, where) + check_image_values(volume, where))
    return volume


def _map_in_threads(function: Callable[[Path], Volume], paths: list[Path]) -> list[Volume]:
    """``[function(p) for p in paths]`` in the thread budget's threads (gzip and ITK's readers release
    the GIL: a four-phase 512 × 512 × 100 case reads in 2.6 s instead of 5.3 on 2 cores); the first
    path's error in order is raised."""
    workers = min(thread_budget(), len(paths))
    if workers <= 1:
        return [function(path) for path in paths]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="read") as pool:
        return list(pool.map(function, paths))


def _raise_first_error(problems: list[Problem]) -> None:
    for problem in problems:
        if problem.severity == "error":
            raise InputError(problem.message, problem.path)
