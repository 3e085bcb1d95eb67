"""The thread budget: what the user asks for wins; otherwise the free cores, never more than usable."""

from __future__ import annotations

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


def test_busy_cores_is_a_share_of_the_machine() -> None:
    busy = threads.busy_cores(0.05)
    assert 0.0 <= busy <= threads.usable_cores() + 1e-6


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
