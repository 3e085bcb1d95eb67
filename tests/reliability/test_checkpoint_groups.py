"""A checkpoint's files are one unit: an interruption before the commit point leaves the previous
checkpoint whole; one after it is finished when the folder is next opened; never a mismatched pair."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from diff4mmlits import checkpoint
from diff4mmlits.checkpoint import (
    CHECKSUMS_NAME,
    COMMIT_NAME,
    STATE_NAME,
    WEIGHTS_NAME,
    load_training_state,
    load_weights,
    save_checkpoint_files,
)
from diff4mmlits.errors import StorageError


def network(value: float) -> torch.nn.Module:
    net = torch.nn.Linear(3, 2)
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(value)
    return net


def save(folder: Path, value: float) -> None:
    save_checkpoint_files(folder, network(value), {"kind": "test", "step": value}, {"step": int(value)})


def loaded(folder: Path) -> tuple[float, int]:
    net = load_weights(torch.nn.Linear(3, 2), folder / WEIGHTS_NAME)
    return float(net.weight[0, 0].detach()), int(load_training_state(folder)["step"])


def test_an_interruption_before_the_commit_point_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    save(tmp_path, 1.0)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C between the weights and the state

    monkeypatch.setattr(checkpoint.torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        save(tmp_path, 2.0)
    monkeypatch.undo()
    assert loaded(tmp_path) == (1.0, 1)  # weights and state of the same checkpoint
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_files_left_by_kill_9_before_the_commit_point_are_discarded(tmp_path: Path) -> None:
    save(tmp_path, 1.0)
    (tmp_path / f".pending.{WEIGHTS_NAME}").write_bytes(b"half of new weights")
    assert loaded(tmp_path) == (1.0, 1)
    assert not (tmp_path / f".pending.{WEIGHTS_NAME}").exists()


def test_a_kill_after_the_commit_point_is_finished_on_the_next_load(tmp_path: Path, monkeypatch) -> None:
    save(tmp_path, 1.0)
    real_replace, calls = os.replace, []

    def replace_then_die(source, target):
        calls.append(Path(target).name)
        if Path(target).name == WEIGHTS_NAME:  # the commit journal is in place, the renames have begun
            raise SystemExit("killed")
        real_replace(source, target)

    monkeypatch.setattr(checkpoint.os, "replace", replace_then_die)
    with pytest.raises(SystemExit):
        save(tmp_path, 2.0)
    monkeypatch.undo()
    assert COMMIT_NAME in calls and (tmp_path / COMMIT_NAME).exists()
    assert loaded(tmp_path) == (2.0, 2)  # the new weights with the new state
    assert not (tmp_path / COMMIT_NAME).exists()
    assert set(checkpoint.read_json_or_none(tmp_path / CHECKSUMS_NAME)) == {WEIGHTS_NAME, STATE_NAME}


def test_a_failed_state_write_is_a_storage_error_naming_the_file(tmp_path: Path, monkeypatch) -> None:
    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0: file write failed")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    with pytest.raises(StorageError, match=rf"{STATE_NAME}: could not be written .*free some space"):
        save(tmp_path, 1.0)
    assert not any(tmp_path.iterdir())
