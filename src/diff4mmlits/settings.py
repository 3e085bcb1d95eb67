"""The base of every configuration section (each stage keeps its section in ``<stage>/config.py``;
``diff4mmlits.config`` composes them)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Base of every configuration section: strict (unknown keys fail) and frozen.

    ``PRESETS`` maps a preset name (``smoke``, ``demo``, ``paper``) to the section's overrides.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    """Unknown keys fail; so do inf and NaN in any float setting (a learning rate of inf trained a NaN model)."""
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
