"""Configuration sections of the data: how datasets are read, the built-in phantom, preview figures."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from diff4mmlits import Phase
from diff4mmlits.settings import Section


class DataConfig(Section):
    """How datasets are read."""

    annotated_phase: Phase = "PVP"
    test_fraction: float = 0.2
    """Share of cases held out from every training stage, for evaluation (at least one case)."""
    validation_fraction: float = 0.2
    """Share of the remaining cases used for validation during training."""


class PhantomConfig(Section):
    """The built-in phantom that ``demo`` generates."""

    cases: int = 12
    size: int = 64
    site: Literal["default", "second", "third"] = "default"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"cases": 3, "size": 32},
        "demo": {"cases": 12, "size": 64},
        "paper": {"cases": 40, "size": 128},
    }


class PreviewConfig(Section):
    """Per-case preview figures."""

    enabled: bool = True
    window_hu: tuple[float, float] = (-160.0, 240.0)
    """Display window for figures, HU."""
