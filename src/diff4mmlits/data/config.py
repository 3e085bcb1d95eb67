"""Configuration sections of the data: how datasets are read, the built-in phantom, preview figures."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import field_validator

from diff4mmlits import Phase
from diff4mmlits.settings import Section


class DataConfig(Section):
    """How datasets are read."""

    annotated_phase: Phase = "PVP"
    test_fraction: float = 0.2
    """Share of cases held out from every training stage, for evaluation (at least one case)."""
    validation_fraction: float = 0.2
    """Share of the remaining cases used for validation during training."""
    healthy_cases: tuple[str, ...] = ()
    """Case ids or shell patterns (``healthy_*``) of tumor-free scans, labelled liver only: normal CT
    that synthetic tumors are painted into (paper step 3), never a training, validation or test case.
    More anatomies to paint into is what made the synthetic cases help (docs/synthesize.md)."""

    @field_validator("healthy_cases", mode="before")
    @classmethod
    def _parse_patterns(cls, value: Any) -> tuple[str, ...]:
        """One pattern, a comma-separated string (``--set data.healthy_cases=healthy_*``) or a list."""
        if value is None:
            return ()
        names = value.split(",") if isinstance(value, str) else list(value)
        return tuple(str(n).strip() for n in names if str(n).strip())


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
