"""Progress: bars on a terminal; a few log lines in a log file or a batch job; nothing when off."""

from __future__ import annotations

import logging

import pytest

from diff4mmlits.cli import main
from diff4mmlits.progress import LINES_PER_LOOP, progress, progress_mode


@pytest.fixture
def not_a_terminal(monkeypatch):
    monkeypatch.delenv("DIFF4MMLITS_NO_PROGRESS", raising=False)
    monkeypatch.delenv("DIFF4MMLITS_PROGRESS", raising=False)
    monkeypatch.setattr("sys.stderr.isatty", lambda: False, raising=False)


def test_a_long_loop_writes_about_ten_lines_off_a_terminal(not_a_terminal, caplog) -> None:
    assert progress_mode() == "lines"
    with caplog.at_level(logging.INFO, logger="diff4mmlits.progress"):
        bar = progress(total=1000, desc="train-x", unit="step")
        for step in range(1000):
            bar.set_postfix(loss=1.0 / (step + 1))
            bar.update(1)
        bar.close()
        for _ in progress(range(500), desc="inner", unit="step", leave=False):  # an epoch's steps: no lines
            pass
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == LINES_PER_LOOP
    assert lines[0].startswith("train-x: 100/1000 steps (10%)") and lines[-1].startswith("train-x: 1000/1000 steps (100%)")
    assert "loss 0.001" in lines[-1]


def test_a_short_loop_writes_one_line_per_case(not_a_terminal, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="diff4mmlits.progress"):
        assert list(progress(["a", "b", "c"], desc="predict", unit="case")) == ["a", "b", "c"]
    assert [r.getMessage().split(",")[0] for r in caplog.records] == [
        "predict: 1/3 case (33%)", "predict: 2/3 cases (67%)", "predict: 3/3 cases (100%)"]


def test_off_writes_nothing_and_still_iterates(monkeypatch, caplog) -> None:
    monkeypatch.setenv("DIFF4MMLITS_NO_PROGRESS", "1")
    with caplog.at_level(logging.INFO, logger="diff4mmlits.progress"):
        assert sum(progress(range(50), desc="x")) == sum(range(50))
    assert not caplog.records


def test_version_and_short_help(capsys) -> None:
    from diff4mmlits import __version__

    assert main(["--version"]) == 0 and capsys.readouterr().out.strip() == f"diff4mmlits {__version__}"
    assert main(["predict", "-h"]) == 0 and "Usage: diff4mmlits predict" in capsys.readouterr().out


def test_quiet_silences_log_lines_but_not_the_result(tmp_path, capsys, not_a_terminal) -> None:
    assert main(["--quiet", "phantom", str(tmp_path / "p"), "--cases", "1", "--size", "16"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "phantom: 1 case" in captured.out
