"""Paper step 1: liver-focused registration of every phase onto the annotated phase (PVP).

``register_case(case, config)`` is the pure entry point; ``stage.py`` reads and writes the run folder.
The entry point is imported on first use (PEP 562): the configuration imports ``register.config``,
which must not pull SimpleITK and the registration backends into every command (``--help`` included).
"""

from __future__ import annotations

from typing import Any

__all__ = ["RegisteredCase", "register_case"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from diff4mmlits.register import case

        return getattr(case, name)
    raise AttributeError(f"module 'diff4mmlits.register' has no attribute {name!r}")
