"""Progress of long work: a tqdm bar on a terminal, a few log lines in a log file or a batch job.

On rank 0 only. When stderr is a terminal, a bar that redraws itself; when it is not (a log file, a
SLURM job, ``nohup``), at most about ten lines per loop through the ``diff4mmlits`` logger (as
nnU-Net writes its epochs), so a long run's log stays readable and small. Bars of inner loops
(``leave=False``, e.g. the steps of one epoch, which has its own line) write nothing there.
``DIFF4MMLITS_NO_PROGRESS=1`` (or ``--quiet``) turns both off; ``DIFF4MMLITS_PROGRESS=bar`` forces
bars, ``=lines`` lines.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
log = logging.getLogger("diff4mmlits.progress")

LINES_PER_LOOP = 10


def progress_mode() -> str:
    """``"bar"``, ``"lines"`` or ``"off"`` (see the module doc).

    The rank test of :func:`diff4mmlits.distributed.is_main_process`, repeated here so that
    data-only commands (phantom, validate) do not import torch."""
    if os.environ.get("RANK", "0") != "0" or os.environ.get("DIFF4MMLITS_NO_PROGRESS"):
        return "off"
    forced = os.environ.get("DIFF4MMLITS_PROGRESS", "").strip().lower()
    if forced in ("bar", "lines", "off"):
        return forced
    return "bar" if sys.stderr.isatty() else "lines"


class LineProgress:
    """The part of tqdm's interface the code uses, written as a few log lines (see the module doc)."""

    def __init__(self, iterable: Iterable[Any] | None, desc: str, total: int | None, unit: str, silent: bool) -> None:
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)  # type: ignore[arg-type]
        self.desc, self.unit, self.silent = desc, unit, silent
        self.n = 0
        self.postfix: dict[str, Any] = {}
        self.start = time.monotonic()
        self.every = max(1, -(-self.total // LINES_PER_LOOP)) if self.total else 1
        self._logged_at = -1

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update(1)

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.n % self.every == 0 or self.n == self.total:
            self._line()

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **values: Any) -> None:
        self.postfix = {**(ordered_dict or {}), **values}

    def close(self) -> None:
        if self.n and self._logged_at != self.n:
            self._line()

    def _line(self) -> None:
        self._logged_at = self.n
        if self.silent:
            return
        of = f"/{self.total}" if self.total else ""
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        extra = "".join(f", {k} {v:.4g}" if isinstance(v, float) else f", {k} {v}" for k, v in self.postfix.items())
        log.info("%s: %d%s %s%s, %.0f s%s", self.desc, self.n, of, self.unit + ("s" if self.n != 1 else ""), share,
                 time.monotonic() - self.start, extra)


def progress(iterable: Iterable[T] | None = None, desc: str = "", total: int | None = None, unit: str = "it",
             leave: bool = True) -> Any:
    """A progress bar or its log lines (``bar.update``, ``bar.set_postfix(loss=...)``, ``bar.close``)."""
    mode = progress_mode()
    if mode == "bar":
        return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, dynamic_ncols=True)
    return LineProgress(iterable, desc, total, unit, silent=mode == "off" or not leave)
