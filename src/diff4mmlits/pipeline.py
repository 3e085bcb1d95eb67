"""The stages in the paper's order, and ``run``: every stage over a run folder, skipping those up to date.

Each stage is declared in its own package (``<stage>/stage.py`` ends with ``STAGES``) behind the
contract of :mod:`diff4mmlits.stage`; this module only concatenates the declarations and loops
over them. A stage is up to date when its stamp (``RUN/.stages/<stage>.json``) records the same
fingerprint as now: its configuration sections, the seed and the fingerprints of the stages it
reads from. Change a setting and that stage and everything downstream runs again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from diff4mmlits import ingest
from diff4mmlits.config import Config
from diff4mmlits.distributed import resolve_device
from diff4mmlits.errors import InputError
from diff4mmlits.evaluate import stage as evaluate_stage
from diff4mmlits.ingest import ingest_dataset
from diff4mmlits.inpaint import stage as inpaint_stage
from diff4mmlits.register import stage as register_stage
from diff4mmlits.report import write_report
from diff4mmlits.runfolder import RunFolder
from diff4mmlits.runlock import run_folder_lock
from diff4mmlits.segment import stage as segment_stage
from diff4mmlits.stage import Stage, StageOutcome, find_stage, run_stage
from diff4mmlits.synthesize import stage as synthesize_stage
from diff4mmlits.translate import stage as translate_stage

log = logging.getLogger(__name__)


def write_run_report(run: RunFolder, config: Config) -> Path:
    """``RUN/report/index.html``: every stage's section, in the paper's order."""
    return write_report(run, config, [*STAGES, *OTHER_STAGES])


REPORT = Stage("report", "report/index.html: what the run folder holds, stage by stage", write_run_report,
               always_runs=True)

STAGES: list[Stage] = [
    *ingest.STAGES,
    *register_stage.STAGES,
    *inpaint_stage.STAGES,
    *synthesize_stage.STAGES,
    *segment_stage.STAGES,
    *evaluate_stage.STAGES,
    REPORT,
]
"""What ``diff4mmlits run`` runs, in the paper's order."""

OTHER_STAGES: list[Stage] = [*synthesize_stage.COMMAND_STAGES, *translate_stage.STAGES]
"""Stage commands over a run folder that ``run`` leaves out (their report sections are shown)."""


def stage_names() -> list[str]:
    return [stage.name for stage in STAGES]


def get_stage(name: str) -> Stage:
    """A stage by name (of ``run``'s stages or the other stage commands)."""
    return find_stage([*STAGES, *OTHER_STAGES], name)


def run_pipeline(
    dataset: str | Path,
    run: RunFolder,
    config: Config,
    only: Iterable[str] | None = None,
    force: bool = False,
) -> RunFolder:
    """Ingest ``dataset`` into ``run`` and run every stage (or ``only`` those), skipping up-to-date ones."""
    wanted = set(only) if only is not None else None
    for name in wanted or ():  # the options first: nothing is written for a command that cannot run
        find_stage(STAGES, name)
    resolve_device(config.device)
    ingest.refuse_run_in_dataset(dataset, run)
    with run_folder_lock(run.root):
        return _run_pipeline_locked(dataset, run, config, wanted, force)



def _run_pipeline_locked(dataset: str | Path, run: RunFolder, config: Config, wanted: set[str] | None,
                         force: bool) -> RunFolder:
    ingest.check_same_dataset(run, dataset)
    if run.exists():  # the saved configuration is only compared here: this run's is given in full
        try:
            previous = run.load_config()
        except InputError as err:  # written by another version of diff4mmlits (a setting since removed), or edited
            log.warning("%s; replaced by this run's configuration (stages whose settings differ from their stamps run again)", err)
        else:
            if previous.model_dump() != config.model_dump():
                log.info("configuration changed since the last run; stages it affects will run again")
    ingest_dataset(dataset, run, config)  # validates first: a refused dataset leaves the folder as it was
    run.save_config(config)
    for stage in STAGES:
        if wanted is None or stage.name in wanted:
            run_stage(run, stage, config, force=force)
    return run


__all__ = ["OTHER_STAGES", "STAGES", "Stage", "StageOutcome", "get_stage", "run_pipeline", "run_stage", "stage_names",
           "write_run_report"]
