"""Independent jobs in worker processes: results in order, handed on as each job finishes, errors raised."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from diff4mmlits.register.workers import run_in_processes


def _wait_for_marker(job: tuple[str, float]) -> str:
    """Job ``(marker path, seconds)``: 'fast' at once when seconds is 0, else whether the marker
    appeared within the seconds."""
    marker, seconds = job
    if seconds == 0:
        return "fast"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if Path(marker).exists():
            return "saw the marker"
        time.sleep(0.05)
    return "timed out"


def _fail(job: int) -> int:
    if job == 1:
        raise ValueError("job 1 is broken")
    return job


def test_each_result_is_handed_on_while_other_jobs_still_run(tmp_path: Path) -> None:
    marker = tmp_path / "first-done"
    handed: list[int] = []

    def on_done(index: int, result: str) -> None:
        handed.append(index)
        if index == 0:
            marker.touch()  # the slow job waits for this: it only sees it if job 0 was handed on first

    results = run_in_processes(_wait_for_marker, [(str(marker), 0), (str(marker), 30.0)], workers=2, on_done=on_done)
    assert results == ["fast", "saw the marker"]
    assert handed == [0, 1]


def test_results_keep_the_order_of_the_jobs_and_an_error_is_raised() -> None:
    assert run_in_processes(_fail, [0, 2, 3], workers=2) == [0, 2, 3]
    with pytest.raises(ValueError, match="job 1 is broken"):
        run_in_processes(_fail, [0, 1, 2], workers=2)
