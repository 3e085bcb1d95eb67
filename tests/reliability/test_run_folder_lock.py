"""Two commands on one run folder: the second stops at once with one line; a dead holder's lock is
taken over with a log line; the lock goes when the command ends, also after an error."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from diff4mmlits.cli import main
from diff4mmlits.config import resolve_config
from diff4mmlits.pipeline import run_pipeline
from diff4mmlits.runfolder import RunFolder
from diff4mmlits.runlock import LOCK_FILE, RunFolderBusy, run_folder_lock

HOLD = ("import sys, time\nfrom diff4mmlits.runlock import run_folder_lock\n"
        "with run_folder_lock(sys.argv[1], 'diff4mmlits train --run X'):\n"
        "    print('held', flush=True)\n    time.sleep(120)\n")


@pytest.fixture
def holder(tmp_path: Path):
    """Another process holding the run folder's lock (killed at the end)."""
    run_dir = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    yield run_dir, process
    process.kill()
    process.wait()


def test_a_second_command_on_a_held_run_folder_stops_with_one_line(holder, capsys) -> None:
    run_dir, process = holder
    RunFolder(run_dir).save_config(resolve_config("smoke"))  # a config exists, as in a real run folder
    before = (run_dir / "config.yaml").read_bytes()
    assert main(["train", "--run", str(run_dir), "--set", "segment.epochs=7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"PID {process.pid}" in err[0] and "diff4mmlits train --run X" in err[0]
    assert "wait for it to finish" in err[0]
    assert (run_dir / "config.yaml").read_bytes() == before  # nothing of the holder's was touched


def test_run_pipeline_refuses_a_held_run_folder(holder, tiny_dataset: Path) -> None:
    run_dir, _ = holder
    with pytest.raises(RunFolderBusy, match="in use by"):
        run_pipeline(tiny_dataset, RunFolder(run_dir), resolve_config("smoke"))
    assert not (run_dir / "config.yaml").exists() and not (run_dir / "manifest.json").exists()


def test_the_lock_of_a_killed_process_is_taken_over_with_a_log_line(holder, caplog) -> None:
    run_dir, process = holder
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert (run_dir / LOCK_FILE).exists()  # kill -9 leaves it behind
    with caplog.at_level(logging.WARNING, logger="diff4mmlits"), run_folder_lock(run_dir, "mine"):
        assert json.loads((run_dir / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert "took over the lock" in caplog.text and f"PID {process.pid}" in caplog.text
    assert not (run_dir / LOCK_FILE).exists()


def test_a_lock_held_from_another_host_is_never_taken_over(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "elsewhere-" + socket.gethostname(),
                                                 "command": "diff4mmlits run", "started": "earlier"}))
    with pytest.raises(RunFolderBusy, match=r"on elsewhere-.*delete .*\.lock if that process is gone"):
        with run_folder_lock(run_dir):
            pass


def test_the_lock_is_released_after_an_error_and_is_reentrant(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(ValueError), run_folder_lock(run_dir, "outer"):
        with run_folder_lock(run_dir, "inner"):  # the same process: no deadlock
            assert json.loads((run_dir / LOCK_FILE).read_text())["command"] == "outer"
        assert (run_dir / LOCK_FILE).exists()  # the outer block still holds it
        raise ValueError("boom")
    assert not (run_dir / LOCK_FILE).exists()


def test_two_real_processes_cannot_both_hold_the_lock(tmp_path: Path) -> None:
    run_dir, release = tmp_path / "run", tmp_path / "release"
    code = ("import sys, time, pathlib\nfrom diff4mmlits.runlock import run_folder_lock, RunFolderBusy\n"
            "try:\n    with run_folder_lock(sys.argv[1]):\n        print('held', flush=True)\n"
            "        deadline = time.monotonic() + 60\n"
            "        while not pathlib.Path(sys.argv[2]).exists() and time.monotonic() < deadline:\n"
            "            time.sleep(0.02)\n"
            "except RunFolderBusy:\n    print('busy', flush=True)\n")
    processes = [subprocess.Popen([sys.executable, "-c", code, str(run_dir), str(release)], stdout=subprocess.PIPE,
                                  text=True) for _ in range(2)]
    outcomes = sorted(p.stdout.readline().strip() for p in processes)  # each says what it got, then the holder waits
    release.touch()
    for process in processes:
        process.communicate(timeout=60)
    assert outcomes == ["busy", "held"]
    assert not (run_dir / LOCK_FILE).exists()


def test_taking_the_lock_removes_what_a_killed_writer_left(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "previews").mkdir(parents=True)
    (run_dir / "previews" / ".case_000.png.d_7vtpkm.tmp.png").write_bytes(b"half")  # atomic_path's temporary name
    (run_dir / "registered" / ".case_001.tmp").mkdir(parents=True)  # a case folder being written
    (run_dir / "registered" / ".case_001.tmp" / "PVP.nii.gz").write_bytes(b"half")
    (run_dir / "previews" / "case_000.png").write_bytes(b"kept")
    with run_folder_lock(run_dir):
        pass
    assert sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*")) == [
        "previews", "previews/case_000.png", "registered"]


def test_a_command_refused_before_writing_leaves_no_run_folder(tmp_path: Path, capsys) -> None:
    """``register /nonexistent --run R`` left an empty R behind; a folder that existed stays."""
    assert main(["register", str(tmp_path / "nonexistent"), "--run", str(tmp_path / "new"), "--preset", "smoke"]) == 2
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    with run_folder_lock(tmp_path / "kept"):
        pass
    assert (tmp_path / "kept").is_dir() and not any((tmp_path / "kept").iterdir())
