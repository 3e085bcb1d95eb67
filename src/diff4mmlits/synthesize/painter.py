"""The contract between a tumor painter and its users (the synthesize stage, the segmenter's on-the-fly synthesis).

A painter takes a tumor-free, registered :class:`~diff4mmlits.data.case.Case` (phases on the
label's grid, label > 0 = liver) and returns a case with the same id, phases and grid: the phases
with new tumors (HU) and the label liver (1) + tumor (2). Every random choice comes from the
generator passed in, so the same seed paints the same case. The painters themselves and their
loaders are in :mod:`diff4mmlits.synthesize.painters`; this module is small so that users can
import the protocol without the models.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from diff4mmlits.data.case import Case


class TumorPainter(Protocol):
    """Anything that paints tumors into a normal case (diffusion, handcrafted and CUT painters)."""

    def paint(self, normal: Case, rng: np.random.Generator) -> Case:
        """The synthetic case: ``normal``'s phases with new tumors and the label 0/1/2 on the same grid."""
        ...

    def paint_with_provenance(self, normal: Case, rng: np.random.Generator) -> tuple[Case, dict[str, Any]]:
        """The synthetic case (as :meth:`paint`, same draws) and its provenance: a JSON-ready dict with ``method`` and the tumors drawn."""
        ...
