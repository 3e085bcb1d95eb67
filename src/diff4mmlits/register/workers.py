"""Independent registrations in worker processes: the cases of the register stage, or the phases
of one case in ``predict`` (issue 17: both cores, the same files as one by one).

Processes, not threads: ITK's random metric sampling draws from a process-wide generator, so two
registrations in threads of one process interleave their draws (measured: the same phase gave a
different transform one run in four). Each worker runs SimpleITK with one thread; its log lines
are collected and printed by the parent (one console, one progress bar).
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, TypeVar

import SimpleITK as sitk

log = logging.getLogger("diff4mmlits")

Job = TypeVar("Job")


def run_in_processes(function: Callable[[Job], Any], jobs: Sequence[Job], workers: int,
                     on_done: Callable[[int, Any], None] | None = None) -> list[Any]:
    """``[function(job) for job in jobs]`` in ``workers`` processes (forkserver, else spawn), in the
    order of ``jobs``. ``function`` must be importable (a module-level function); the workers' log
    messages are printed here; ``on_done(index, result)`` runs here as each job finishes (work that
    overlaps the jobs still running); the first error cancels the jobs not started and is raised."""
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    level = logging.getLogger("diff4mmlits").getEffectiveLevel()
    results: dict[int, Any] = {}
    with ProcessPoolExecutor(max_workers=max(1, min(workers, len(jobs))), mp_context=context,
                             initializer=_init_worker, initargs=(level,)) as pool:
        futures: dict[Future, int] = {pool.submit(_call_in_worker, function, job): i for i, job in enumerate(jobs)}
        pending = set(futures)
        while pending:
            # FIRST_COMPLETED: each result is handed on as it comes (FIRST_EXCEPTION would wait for all)
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                error = future.exception()
                if error is not None:
                    for other in pending:
                        other.cancel()
                    raise error
                result, messages = future.result()
                for message_level, message in messages:
                    log.log(message_level, "%s", message)  # the worker's warnings, printed here
                results[futures[future]] = result
                if on_done is not None:
                    on_done(futures[future], result)
    return [results[i] for i in range(len(jobs))]


class _CollectingHandler(logging.Handler):
    """Keeps a worker's log messages so that the main process prints them."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append((record.levelno, record.getMessage()))


_WORKER_LOG = _CollectingHandler()


def _init_worker(level: int) -> None:
    """Worker set-up: one SimpleITK thread (the processes share the cores); log messages collected."""
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    root = logging.getLogger("diff4mmlits")
    root.handlers[:] = [_WORKER_LOG]
    root.setLevel(level)
    root.propagate = False


def _call_in_worker(function: Callable[[Any], Any], job: Any) -> tuple[Any, list[tuple[int, str]]]:
    _WORKER_LOG.messages.clear()
    result = function(job)
    return result, list(_WORKER_LOG.messages)
