"""Run folders as finished stages leave them, for tests that start part-way down the pipeline.

A stage reads only complete case folders (``RunFolder.write_case``: renamed into place, the area's
last file written last) of stages that finished (stamped); these helpers put both in place.
"""

from __future__ import annotations

from diff4mmlits.config import Config
from diff4mmlits.data.case import Case
from diff4mmlits.ingest import describe_case
from diff4mmlits.pipeline import get_stage
from diff4mmlits.runfolder import AREAS, RunFolder
from diff4mmlits.stage import stage_fingerprint


def put_case(run: RunFolder, area: str, case: Case, **json_files: dict) -> None:
    """Write ``case`` into ``area`` as its stage would (an empty marker file where none is given)."""
    last = AREAS[area].last_file
    files = dict(json_files)
    if last is not None:
        files.setdefault(last, {"case": case.case_id})
    run.write_case(area, case, json_files=files)


def mark_finished(run: RunFolder, config: Config, *stages: str) -> None:
    """Stamp ``stages`` as finished with ``config`` (in pipeline order, so fingerprints chain)."""
    for name in stages:
        run.write_stamp(name, stage_fingerprint(run, get_stage(name), config))


def write_manifest(run: RunFolder, cases: list[Case], train: list[str], validation: list[str], test: list[str],
                   dataset: str = "", annotated_phase: str = "PVP") -> None:
    """``manifest.json`` as ingest writes it, for cases that are not on disk as a dataset."""
    run.save_manifest({"dataset": dataset or str(run.root), "layout": "native", "annotated_phase": annotated_phase,
                       "cases": [describe_case(case) for case in cases],
                       "split": {"train": train, "validation": validation, "test": test}})
