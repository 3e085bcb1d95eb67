"""Dataset validation: one row per case, one line per problem (which file, what is wrong, what to do).

``diff4mmlits validate DATASET`` prints the table and the problems and exits non-zero when any
problem is an error; it writes nothing. The pipeline validates every dataset it ingests the same
way. Every problem of a dataset is reported, not only the first: each file of each case is read
and checked on its own, so a case with one unreadable phase still gets its other files checked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diff4mmlits import PHASES
from diff4mmlits.data.case import ANNOTATED_PHASE, Case, liver_and_tumor_volume_ml
from diff4mmlits.data.casefiles import CaseFiles, renumber_label
from diff4mmlits.data.checks import (
    Problem,
    check_geometry,
    check_image_values,
    check_label_content,
    check_label_grid,
    check_label_values,
    check_overlap,
)
from diff4mmlits.data.io import read_volume
from diff4mmlits.data.volume import Volume
from diff4mmlits.errors import InputError

__all__ = ["CaseRow", "Problem", "ValidationReport", "case_row", "validate_case_files", "validate_dataset"]


@dataclass(frozen=True)
class CaseRow:
    """One line of the validation table."""

    case_id: str
    phases: tuple[str, ...]
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    label_classes: tuple[int, ...]
    liver_ml: float
    tumor_ml: float


@dataclass
class ValidationReport:
    """Rows for the cases that could be read, and every problem found."""

    dataset: Path
    rows: list[CaseRow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_for_errors(self) -> None:
        """Raise the first error as an :class:`InputError` (with a count of the others)."""
        if self.errors:
            first = self.errors[0]
            more = f" (and {len(self.errors) - 1} more problem(s); run 'diff4mmlits validate {self.dataset}')" if len(self.errors) > 1 else ""
            raise InputError(f"{first.path}: {first.message}{more}")


def case_row(case: Case) -> CaseRow:
    """The table row of a case that was read."""
    return _row(case.case_id, dict(case.phases), case.annotated_phase, case.label)


def _row(case_id: str, phases: dict[str, Volume], annotated_phase: str, label: Volume | None) -> CaseRow:
    annotated = phases[annotated_phase]
    classes: tuple[int, ...] = ()
    liver_ml = tumor_ml = 0.0
    if label is not None:
        classes = tuple(int(v) for v in np.unique(label.array))
        liver_ml, tumor_ml = liver_and_tumor_volume_ml(label)
    names = tuple(name for name in PHASES if name in phases)
    return CaseRow(case_id, names, annotated.shape, annotated.spacing_mm, classes, liver_ml, tumor_ml)


def validate_case_files(
    files: CaseFiles, annotated_phase: str = ANNOTATED_PHASE, require_label: bool = True
) -> tuple[CaseRow | None, list[Problem]]:
    """Read and check every file of one case; return its table row (when its annotated phase could
    be read) and all problems found. Never raises for bad data."""
    problems = [Problem("error", str(path), message) for path, message in files.issues]
    problems += [Problem("error", str(path), message) for path, message in files.missing(annotated_phase, require_label)]

    phases: dict[str, Volume] = {}  # readable phases
    sound: set[str] = set()  # phases whose geometry is sound (world positions mean something)
    for name, path in files.phases.items():
        try:
            volume = read_volume(path)
        except InputError as err:
            problems.append(Problem.from_error(err, path))
            continue
        geometry = check_geometry(volume, path)
        problems += geometry + check_image_values(volume, path)
        phases[name] = volume
        if not geometry:
            sound.add(name)

    label: Volume | None = None
    if files.label is not None:
        label, label_problems = _read_checked_label(files.label, files.label_ids)
        problems += label_problems
    annotated = phases.get(annotated_phase)
    if annotated is not None and label is not None:
        grid = check_label_grid(label, annotated, files.label, annotated_phase)
        problems += grid
        if grid:
            label = None
    if annotated_phase in sound:
        for name in sorted(sound - {annotated_phase}):
            problems += check_overlap(phases[name], annotated, files.phases[name], annotated_phase)
    row = _row(files.case_id, phases, annotated_phase, label) if annotated is not None else None
    return row, problems


def _read_checked_label(path: Path, label_ids: Mapping[int, int] | None) -> tuple[Volume | None, list[Problem]]:
    """The label when it is usable for case-level checks (values and geometry sound), and its problems."""
    try:
        label = read_volume(path, kind="label")
        if label_ids is not None:
            label = renumber_label(label, label_ids, path)
    except InputError as err:
        return None, [Problem.from_error(err, path)]
    geometry = check_geometry(label, path)
    values = check_label_values(label, path)
    problems = geometry + values
    if values:
        return None, problems
    problems += check_label_content(label, path)
    return (label if not geometry else None), problems


def validate_dataset(dataset: str | Path, annotated_phase: str = ANNOTATED_PHASE, require_label: bool = True) -> ValidationReport:
    """Check every case of a dataset, whatever its layout; problems are collected, never raised."""
    from diff4mmlits.data.dataset import list_case_files
    from diff4mmlits.progress import progress

    dataset = Path(dataset)
    report = ValidationReport(dataset=dataset)
    try:
        cases = list_case_files(dataset, require_label=require_label, annotated_phase=annotated_phase)
    except InputError as err:
        report.problems.append(Problem.from_error(err, dataset))
        return report
    for files in progress(cases, desc="validate", unit="case", leave=False):
        row, problems = validate_case_files(files, annotated_phase, require_label)
        if row is not None:
            report.rows.append(row)
        report.problems += problems
    report.problems += check_phases_across_cases(report.rows, dataset)
    return report


def check_phases_across_cases(rows: Sequence[CaseRow], dataset: Path) -> list[Problem]:
    """A warning for each case that lacks a phase most of the dataset's cases have (a scan not
    exported, or a write that did not finish): the segmenter then fills that channel from the nearest phase."""
    counts = Counter(name for row in rows for name in row.phases)
    common = [name for name in PHASES if counts[name] > len(rows) / 2]
    return [Problem("warning", str(dataset / row.case_id),
                    f"no {', '.join(missing)} phase, which {min(counts[m] for m in missing)} of the {len(rows)} cases "
                    "have; the segmenter fills its channel from the nearest phase (check the export if the scan exists)")
            for row in rows if (missing := [name for name in common if name not in row.phases])]
