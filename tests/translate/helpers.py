"""Small shared pieces of the translate tests."""

from __future__ import annotations

from diff4mmlits.config import resolve_config
from diff4mmlits.translate.config import TranslateConfig


def smoke_config(**changes: object) -> TranslateConfig:
    """The smoke preset's translate settings with ``changes``."""
    return resolve_config("smoke").translate.model_copy(update=changes)


def losses_fall(history: list[dict[str, float]], key: str, window: int = 3) -> bool:
    """Whether the mean of ``key`` over the last ``window`` steps is below that of the first."""
    first = sum(h[key] for h in history[:window]) / window
    last = sum(h[key] for h in history[-window:]) / window
    return last < first
