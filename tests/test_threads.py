"""The thread budget: what the user asks for wins; otherwise the free cores, never more than usable."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from diff4mmlits import threads


@pytest.fixture
def no_thread_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import SimpleITK as sitk

    for name in (threads.ENV_THREADS, "OMP_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        monkeypatch.setenv(name, "1")  # recorded, so that what the test sets is undone after it
        monkeypatch.delenv(name)
    monkeypatch.setattr(threads, "_budget", None)
    itk_before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    yield
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(itk_before)


def test_the_requested_count_wins_over_the_environment(no_thread_settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.choose_threads(5) == 5
    assert threads.choose_threads() == 3
    monkeypatch.setenv(threads.ENV_THREADS, "2")
    assert threads.choose_threads() == 2


def test_an_idle_machine_gives_every_usable_core(no_thread_settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(threads, "busy_cores", lambda interval_s=0.1: 0.2)
    assert threads.choose_threads() == 4


def test_a_busy_machine_is_not_oversubscribed(no_thread_settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "busy_cores", lambda interval_s=0.1: 1.8)  # another job on both cores
    assert threads.choose_threads() == 1
    monkeypatch.setattr(threads, "busy_cores", lambda interval_s=0.1: 1.1)  # one core taken
    assert threads.choose_threads() == 1
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    assert threads.choose_threads() == 7


def test_busy_cores_sums_the_busy_share_of_the_cores_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two readings of ``/proc/stat`` (user nice system idle iowait irq softirq steal): cpu0 busy 3
    of 4 ticks, cpu1 1 of 4 (iowait counts as idle), cpu2 outside the affinity mask, the "cpu" total
    line ignored."""
    readings = iter([
        "cpu  900 0 0 900 0 0 0 0 0 0\ncpu0 100 0 0 100 0 0 0 0\ncpu1 100 0 0 100 0 0 0 0\ncpu2 100 0 0 100 0 0 0 0\n",
        "cpu  999 0 0 999 0 0 0 0 0 0\ncpu0 102 0 1 101 0 0 0 0\ncpu1 100 0 1 101 2 0 0 0\ncpu2 104 0 0 100 0 0 0 0\n",
    ])
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(threads.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(threads, "open", lambda path, encoding=None: io.StringIO(next(readings)), raising=False)
    assert threads.busy_cores(0.05) == pytest.approx(0.75 + 0.25)


def test_busy_cores_is_0_where_proc_stat_cannot_be_read(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreadable(path, encoding=None):
        raise OSError("no /proc here")

    monkeypatch.setattr(threads.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(threads, "open", unreadable, raising=False)
    assert threads.busy_cores() == 0.0


def test_apply_sets_torch_and_the_children_environment(no_thread_settings) -> None:
    before = torch.get_num_threads()
    try:
        assert threads.apply_threads(2) == 2
        assert torch.get_num_threads() == 2
        assert os.environ[threads.ENV_THREADS] == "2" and os.environ["OMP_NUM_THREADS"] == "2"
        assert threads.thread_budget() == 2
        assert threads.worker_processes(jobs=1) == 1 and threads.worker_processes(limit=4) == 2
    finally:
        torch.set_num_threads(before)


def test_the_cli_option_sets_the_budget_for_the_command(no_thread_settings, capsys: pytest.CaptureFixture[str]) -> None:
    from diff4mmlits.cli import main

    before = torch.get_num_threads()
    try:
        assert main(["--threads", "3", "config", "--preset", "smoke"]) == 0
        assert threads.thread_budget() == 3 and os.environ[threads.ENV_THREADS] == "3"
        assert "--threads" in (main(["--help"]) == 0 and capsys.readouterr().out)
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(not Path("/proc/meminfo").is_file(), reason="no /proc/meminfo (not Linux)")
def test_available_memory_is_read_from_meminfo() -> None:
    available = threads.available_memory_bytes()
    assert available is not None and 2**20 < available <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
