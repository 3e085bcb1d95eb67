"""Dataset validation: one row per case, one line per problem (which file, what is wrong, what to do).

``diff4mmlits validate DATASET`` prints the table and the problems and exits non-zero when any
problem is an error. Every command that reads a dataset goes through :func:`validate_dataset`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from diff4mmlits.data.case import Case, liver_and_tumor_volume_ml
from diff4mmlits.errors import InputError

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One finding: the file, what is wrong and what to do, as one line."""

    severity: Severity
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.path}: {self.message}"


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
    annotated = case.annotated
    classes: tuple[int, ...] = ()
    liver_ml = tumor_ml = 0.0
    if case.label is not None:
        classes = tuple(int(v) for v in np.unique(case.label.array))
        liver_ml, tumor_ml = liver_and_tumor_volume_ml(case.label)
    return CaseRow(case.case_id, tuple(case.phase_names), annotated.shape, annotated.spacing_mm, classes, liver_ml, tumor_ml)


def validate_dataset(dataset: str | Path, annotated_phase: str = "PVP", require_label: bool = True) -> ValidationReport:
    """Check every case of a dataset; never raises for bad data (problems are collected)."""
    from diff4mmlits.data.checks import check_dataset

    return check_dataset(Path(dataset), annotated_phase=annotated_phase, require_label=require_label)
