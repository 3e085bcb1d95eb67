"""The training kit: the log's file, its resume rule and curves; the precision policy; the model-folder kind."""

from __future__ import annotations

import contextlib
import json
import math

import pytest
import torch

from diff4mmlits.checkpoint import read_model_config, save_model_folder
from diff4mmlits.errors import InputError
from diff4mmlits.training import (
    CURVES_NAME,
    LOG_NAME,
    CurveGroup,
    RunningMean,
    TrainingLog,
    autocast,
    grad_scaler,
    read_log,
    step_rng,
)


def test_log_writes_its_columns_in_order_and_formats_numbers(tmp_path) -> None:
    log = TrainingLog(tmp_path, ["step", "loss", "lr"])
    log.add({"step": 1, "loss": 0.123456789, "lr": 1e-4, "extra": 3.0})
    log.add({"step": 2, "loss": math.nan})
    log.write(final=True)
    assert (tmp_path / LOG_NAME).read_text().splitlines() == ["step,loss,lr", "1,0.123457,0.0001", "2,nan,"]
    assert (tmp_path / CURVES_NAME).stat().st_size > 0
    assert read_log(tmp_path / LOG_NAME)[0] == {"step": 1, "loss": 0.123457, "lr": 0.0001}


def test_columns_follow_the_rows_when_not_given(tmp_path) -> None:
    log = TrainingLog(tmp_path, groups=[CurveGroup("losses", None, log_scale=True)])
    log.add({"step": 1, "a": 1.0, "seconds": 0.5})
    log.add({"step": 2, "a": 0.5, "b": 2.0, "seconds": 1.0})
    log.write()
    assert (tmp_path / LOG_NAME).read_text().splitlines()[0] == "step,a,seconds,b"
    assert log.plot() is not None


@pytest.mark.parametrize("from_state", [True, False])
def test_resume_keeps_the_rows_logged_up_to_the_checkpoint(tmp_path, from_state: bool) -> None:
    first = TrainingLog(tmp_path, ["epoch", "loss"], step_key="epoch")
    for epoch in (1, 2, 3):
        first.add({"epoch": epoch, "loss": 1.0 / epoch})
    first.write()
    resumed = TrainingLog(tmp_path, ["epoch", "loss"], step_key="epoch")
    resumed.resume(2, first.rows if from_state else None)
    assert [row["epoch"] for row in resumed.rows] == [1, 2]
    assert resumed.rows[-1]["loss"] == pytest.approx(0.5)


def test_old_logs_with_float_steps_read_back() -> None:
    rows = [{"step": 3.0, "x": 1.0}]
    log = TrainingLog("unused")
    log.resume(3, rows)
    assert log.last == {"step": 3.0, "x": 1.0}


def test_running_mean_and_step_rng() -> None:
    running = RunningMean()
    running.add(a=1.0, b=2.0)
    running.add(a=3.0)
    assert running.pop() == {"a": 2.0, "b": 2.0} and running.pop() == {}
    assert step_rng(1, 0, 5).integers(1 << 30) == step_rng(1, 0, 5).integers(1 << 30)
    assert step_rng(1, 0, 5).integers(1 << 30) != step_rng(1, 1, 5).integers(1 << 30)


def test_cpu_never_autocasts_nor_scales() -> None:
    cpu = torch.device("cpu")
    assert isinstance(autocast(cpu, True, torch.float16), contextlib.nullcontext)
    assert not grad_scaler(cpu, True, torch.float16).is_enabled()


def test_read_model_config_checks_the_kind_under_both_keys(tmp_path) -> None:
    save_model_folder(tmp_path / "new", torch.nn.Linear(2, 2), {"kind": "ffc-inpainter"})
    save_model_folder(tmp_path / "old", torch.nn.Linear(2, 2), {"model": "ffc-inpainter"})
    for name in ("new", "old"):
        assert read_model_config(tmp_path / name, kind="ffc-inpainter")
    with pytest.raises(InputError, match="not a vqvae model folder"):
        read_model_config(tmp_path / "new", kind="vqvae")
    assert json.loads((tmp_path / "old" / "config.json").read_text()) == read_model_config(tmp_path / "old")
