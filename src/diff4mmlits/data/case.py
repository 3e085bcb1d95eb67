"""`Case`: the phases of one patient study and the label drawn on the annotated phase."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from diff4mmlits import LABEL_LIVER, LABEL_TUMOR, PHASES
from diff4mmlits.data.volume import Volume, require_same_grid
from diff4mmlits.errors import InputError

ANNOTATED_PHASE = "PVP"
"""The phase the tumors are drawn on (the paper's portal venous phase)."""


@dataclass(frozen=True)
class Case:
    """One study: any subset of the phases ``NC, AP, PVP, DP`` and a label on the annotated phase.

    Attributes:
        case_id: the case's name (its folder name in the native layout).
        phases: phase name → image volume in HU. The annotated phase is required.
        label: ``(z, y, x)`` label map on the annotated phase's grid (0 background, 1 liver,
            2 tumor), or ``None`` for an unlabelled case (prediction input).
        annotated_phase: the phase the label belongs to.
    """

    case_id: str
    phases: Mapping[str, Volume]
    label: Volume | None = None
    annotated_phase: str = ANNOTATED_PHASE
    extras: Mapping[str, Volume] = field(default_factory=dict)
    """Other volumes that travel with the case (e.g. ``inpaint_mask``); same grid as the label."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.phases) - set(PHASES))
        if unknown:
            raise InputError(f"{self.case_id}: unknown phase name(s) {unknown}; use {', '.join(PHASES)}")
        if self.annotated_phase not in self.phases:
            raise InputError(
                f"{self.case_id}: the annotated phase {self.annotated_phase} is missing "
                f"(present: {', '.join(self.phase_names) or 'none'}); it is required"
            )
        ordered = {name: self.phases[name] for name in PHASES if name in self.phases}
        object.__setattr__(self, "phases", MappingProxyType(ordered))
        object.__setattr__(self, "extras", MappingProxyType(dict(self.extras)))
        if self.label is not None:
            require_same_grid(self.annotated, self.label, what=f"{self.case_id}/label vs {self.annotated_phase}")
        for name, volume in self.extras.items():
            require_same_grid(self.annotated, volume, what=f"{self.case_id}/{name} vs {self.annotated_phase}")

    @property
    def phase_names(self) -> list[str]:
        """Phases present, in the canonical order NC, AP, PVP, DP."""
        return [name for name in PHASES if name in self.phases]

    @property
    def annotated(self) -> Volume:
        """The annotated phase's volume (defines the case's grid)."""
        return self.phases[self.annotated_phase]

    @property
    def liver_mask(self) -> np.ndarray:
        """Boolean ``(z, y, x)``: liver including tumors (label > 0)."""
        if self.label is None:
            raise InputError(f"{self.case_id}: has no label; a liver mask is needed here")
        return self.label.array > 0

    @property
    def tumor_mask(self) -> np.ndarray:
        """Boolean ``(z, y, x)``: tumor voxels (label == 2)."""
        if self.label is None:
            raise InputError(f"{self.case_id}: has no label; a tumor mask is needed here")
        return self.label.array == LABEL_TUMOR

    def is_registered(self) -> bool:
        """True when every phase lies on the annotated phase's grid."""
        return all(volume.same_grid(self.annotated) for volume in self.phases.values())

    def require_registered(self) -> None:
        """Raise :class:`InputError` unless every phase lies on the annotated phase's grid."""
        for name, volume in self.phases.items():
            require_same_grid(
                self.annotated, volume, what=f"{self.case_id}/{name} vs {self.annotated_phase}",
                hint="run 'diff4mmlits register' first",
            )


def liver_and_tumor_volume_ml(label: Volume) -> tuple[float, float]:
    """Liver (label ≥ 1, tumors included) and tumor (label 2) volumes in mL."""
    voxel_ml = label.voxel_volume_ml
    liver = float(np.count_nonzero(label.array >= LABEL_LIVER)) * voxel_ml
    tumor = float(np.count_nonzero(label.array == LABEL_TUMOR)) * voxel_ml
    return liver, tumor
