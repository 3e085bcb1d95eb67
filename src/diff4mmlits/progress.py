"""Progress bars for long work (tqdm), shown only on rank 0 and only when useful."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_enabled() -> bool:
    """Bars are shown on rank 0 unless ``DIFF4MMLITS_NO_PROGRESS`` is set (tests set it).

    The rank test of :func:`diff4mmlits.distributed.is_main_process`, repeated here so that
    data-only commands (phantom, validate) do not import torch."""
    return os.environ.get("RANK", "0") == "0" and not os.environ.get("DIFF4MMLITS_NO_PROGRESS")


def progress(iterable: Iterable[T] | None = None, desc: str = "", total: int | None = None, unit: str = "it", leave: bool = True) -> tqdm:
    """A tqdm bar (``bar.set_postfix(loss=...)`` shows losses), disabled off rank 0."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, dynamic_ncols=True, disable=not progress_enabled())
