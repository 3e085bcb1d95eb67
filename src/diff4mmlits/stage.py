"""The Stage contract: what every step of the pipeline declares, and the one place that runs it.

A stage is declared once, in its own package (``register/stage.py`` ends with ``STAGES = [...]``):
its name and help, the config sections and upstream stages its result depends on, the function that
does the work over a run folder, and the function that draws its section of the run report.
``pipeline.py`` concatenates the declarations in the paper's order; the CLI's stage commands and
``diff4mmlits run`` both go through :func:`run_stage`, which alone decides "up to date", clears the
stamp before the stage writes anything, times the stage and stamps it only when it finished.

This module is a leaf of the shared kit: it imports the run folder and the config types, never a
stage package.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diff4mmlits.config import Config
from diff4mmlits.data.case import ANNOTATED_PHASE
from diff4mmlits.distributed import (
    barrier_if_distributed,
    gpu_memory_peak_gib,
    is_main_process,
    reset_gpu_memory_peak,
    resolve_device,
)
from diff4mmlits.errors import InputError
from diff4mmlits.runfolder import RunFolder, annotated_phase_parts, fingerprint_of
from diff4mmlits.runlock import run_folder_lock

log = logging.getLogger(__name__)

StageWork = Callable[..., Any]
"""``work(run, config, **options)``: reads the run folder, writes the stage's outputs, returns a summary."""
ReportSection = Callable[[RunFolder, Path], str]
"""``section(run, report_dir)``: an HTML fragment for ``report/index.html`` (``""`` when nothing to show)."""


DECLARED: dict[str, Stage] = {}
"""Every stage declared so far, by name (a stage package declares its stages when it is imported;
the command line imports them all): what :func:`check_upstream` names when one has not run."""


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline over a run folder.

    ``options`` given to :func:`run_stage` go to ``work`` unchanged; they must not change what the
    stage writes (``resume``, ``workers``, a progress callback): whatever changes the outputs is a
    config setting, so that it is part of the fingerprint.
    """

    name: str
    help: str
    work: StageWork
    config_sections: tuple[str, ...] = ()
    """Config sections (``"inpaint"``) or single settings (``"inpaint.close_kernel_vox"``) whose values
    decide whether the stage must run again."""
    upstream: tuple[str, ...] = ()
    """Stages whose outputs this stage may read (their fingerprints are part of this one's)."""
    needs: Callable[[Config], Sequence[str]] | None = None
    """The upstream stages that must have finished for these settings (default: all of ``upstream``)."""
    report: ReportSection | None = None
    always_runs: bool = False
    """Never skipped (the run report: it shows whatever the folder holds now)."""
    is_complete: Callable[[RunFolder, Config], bool] | None = None
    """Checked after the work: the stage is stamped only when it holds (e.g. every shard registered)."""
    check: Callable[..., None] | None = None
    """``check(run, config, **options)``: raises ``InputError`` for options the work would refuse, before
    the stamp is cleared (a bad option must not make a finished stage look unfinished)."""
    command: str = ""
    """The command that runs this stage over a run folder where it is not ``diff4mmlits <name>``."""
    in_run: bool = True
    """``diff4mmlits run`` runs it (False: a stage command of its own, such as the CUT painter)."""
    outputs: tuple[str, ...] = ()
    """Run-folder paths the stage always writes (a file, or a folder it fills): a stamped stage whose
    outputs were deleted (to have them made again) is not up to date."""

    def __post_init__(self) -> None:
        DECLARED.setdefault(self.name, self)

    def required_upstream(self, config: Config) -> tuple[str, ...]:
        return tuple(self.needs(config)) if self.needs is not None else self.upstream


@dataclass(frozen=True)
class StageOutcome:
    """What :func:`run_stage` did: whether the stage ran, what its work returned, how long it took (s)."""

    ran: bool
    result: Any = None
    seconds: float = 0.0


def stage_fingerprint(run: RunFolder, stage: Stage, config: Config) -> str:
    """What a stage's result depends on: its config sections, the seed, upstream results, the manifest
    (its cases, split and annotated phase).

    An upstream stage that has not finished adds nothing (as if it were not listed), and the annotated
    phase adds itself only when it is not PVP: so a run folder that never ran a stage added to
    ``upstream`` since, or that was annotated on PVP, keeps its stamps across that change."""
    sections = {key: _section_values(config, key) for key in stage.config_sections}
    upstream = {name: stamp["fingerprint"] for name in stage.upstream
                if (stamp := run.read_stamp(name)) is not None and stamp.get("fingerprint") is not None}
    manifest = run.load_manifest() if run.manifest_path.is_file() else {}
    return fingerprint_of(stage.name, sections, config.seed, upstream, manifest.get("cases"), manifest.get("split"),
                          *annotated_phase_parts(manifest.get("annotated_phase", ANNOTATED_PHASE)))


def _section_values(config: Config, key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def is_up_to_date(run: RunFolder, stage: Stage, config: Config) -> bool:
    """The stage's stamp records the fingerprint these settings and upstream results give, and what it
    wrote is still there (its ``outputs``, and ``is_complete`` where declared): ``rm -rf RUN/registered``
    used to leave register 'up to date' and every later stage stopping on the missing folder."""
    stamp = run.read_stamp(stage.name)
    if stamp is None or stamp.get("fingerprint") != stage_fingerprint(run, stage, config):
        return False
    missing = [path for path in stage.outputs if not _holds_something(run.root / path)]
    if missing or (stage.is_complete is not None and not stage.is_complete(run, config)):
        log.info("%s: its outputs in %s are gone or incomplete; running it again", stage.name,
                 ", ".join(missing) or "the run folder")
        return False
    return True


def _holds_something(path: Path) -> bool:
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


def check_upstream(run: RunFolder, stage: Stage, config: Config) -> None:
    """Refuse to start when a stage this one reads from has not finished (an interrupted or missing run)."""
    for name in stage.required_upstream(config):
        if run.read_stamp(name) is None:
            upstream = DECLARED.get(name)
            command = upstream.command if upstream and upstream.command else name
            whole = f" or 'diff4mmlits run DATASET --run {run.root}'" if upstream is None or upstream.in_run else ""
            raise InputError(f"{stage.name} reads what '{name}' writes, and '{name}' has not finished in this run folder "
                             f"(never run, or interrupted); run 'diff4mmlits {command} --run {run.root}'{whole} first",
                             run.root)


def run_stage(run: RunFolder, stage: Stage, config: Config, force: bool = False, *, lock: bool = True,
              **options: Any) -> StageOutcome:
    """Run one stage unless it is up to date (``force`` runs it anyway).

    The stamp is cleared before the stage writes anything and written only when its work returned,
    so an interrupted stage (an error, Ctrl-C, ``kill -9``) is never taken for a finished one; a
    stage with ``is_complete`` is stamped only when that holds (one shard of several is not).
    Under ``torchrun`` every process does the work; only rank 0 clears and writes the stamp. The run
    folder's lock (:mod:`diff4mmlits.runlock`) is held throughout (``lock=False``: shards of a stage
    that run at once on several machines, each writing only its own cases).
    """
    with run_folder_lock(run.root) if lock else contextlib.nullcontext():
        return _run_stage_locked(run, stage, config, force, **options)


def _run_stage_locked(run: RunFolder, stage: Stage, config: Config, force: bool, **options: Any) -> StageOutcome:
    if not force and not stage.always_runs and is_up_to_date(run, stage, config):
        log.info("%s: up to date, skipped", stage.name)
        return StageOutcome(ran=False)
    check_upstream(run, stage, config)
    resolve_device(config.device)  # a device this machine lacks is refused before the stamp is cleared
    if stage.check is not None:
        stage.check(run, config, **options)
    main = is_main_process()
    if main:
        run.clear_stamp(stage.name)
    barrier_if_distributed()
    log.info("%s: running", stage.name)
    reset_gpu_memory_peak()
    start = time.perf_counter()
    result = stage.work(run, config, **options)
    seconds = time.perf_counter() - start
    barrier_if_distributed()
    complete = stage.is_complete is None or stage.is_complete(run, config)
    if main and complete and not stage.always_runs:
        run.write_stamp(stage.name, stage_fingerprint(run, stage, config), {"seconds": round(seconds, 2)})
    peak = gpu_memory_peak_gib()
    log.info("%s: done in %.1f s%s", stage.name, seconds, "" if peak is None else f", peak GPU memory {peak:.1f} GiB")
    return StageOutcome(ran=True, result=result, seconds=seconds)


def find_stage(stages: Sequence[Stage], name: str) -> Stage:
    """The stage called ``name``; an unknown name is bad input (one line listing the stages)."""
    for stage in stages:
        if stage.name == name:
            return stage
    raise InputError(f"unknown stage {name!r}; stages are {', '.join(s.name for s in stages)}")
