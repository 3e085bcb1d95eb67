"""diff4mmlits: multi-phase liver-tumor segmentation by diffusion-based synthesis (Diff4MMLiTS)."""

__version__ = "0.1.0"

from typing import Literal

PHASES: tuple[str, ...] = ("NC", "AP", "PVP", "DP")
"""Phase names in the channel order of every model input."""
Phase = Literal["NC", "AP", "PVP", "DP"]
"""One phase name (the type of settings that name a phase)."""

LABEL_BACKGROUND, LABEL_LIVER, LABEL_TUMOR = 0, 1, 2
"""Label ids on disk: 0 background, 1 liver, 2 tumor."""
