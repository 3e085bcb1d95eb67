"""inpaint_case (pure) and the train-inpainter / inpaint commands over a run folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diff4mmlits import PHASES
from diff4mmlits.cli import main
from diff4mmlits.config import resolve_config
from diff4mmlits.data.case import Case
from diff4mmlits.data.io import read_volume
from diff4mmlits.inpaint.case import inpaint_case
from diff4mmlits.inpaint.infer import Inpainter
from diff4mmlits.inpaint.network import FFCInpainter, InpainterArchitecture
from diff4mmlits.runfolder import RunFolder
from finished_stages import mark_finished, put_case, write_manifest


def tiny_model() -> Inpainter:
    import torch

    net = FFCInpainter(InpainterArchitecture(base_channels=8, max_channels=16, n_downsampling=2, n_blocks=1))
    return Inpainter(net.eval(), (-175.0, 250.0), torch.device("cpu"), batch_size=4)


@pytest.mark.parametrize("method", ["ffc", "median", "mean-fill"])
def test_inpaint_case_changes_only_the_mask_in_every_phase(small_case: Case, method: str) -> None:
    config = resolve_config("smoke")
    normal = inpaint_case(small_case, method, tiny_model(), config)
    hole = normal.extras["inpaint_mask"].array > 0
    assert hole.sum() > (small_case.label.array == 2).sum()  # closed and dilated: covers more than the tumor
    assert np.all(hole[small_case.label.array == 2])
    assert normal.phase_names == list(PHASES)
    for name in PHASES:
        before, after = small_case.phases[name], normal.phases[name]
        assert after.same_grid(before)
        assert np.array_equal(after.array[~hole].view(np.uint32), before.array[~hole].astype(np.float32).view(np.uint32))
        assert np.isfinite(after.array[hole]).all() and not np.array_equal(after.array[hole], before.array[hole])
    assert (normal.label.array == 2).sum() == 0
    assert np.array_equal(normal.label.array > 0, small_case.label.array > 0)


def test_a_case_without_tumor_comes_back_unchanged(small_case: Case) -> None:
    label = small_case.label.with_array(np.minimum(small_case.label.array, 1))
    case = Case("clean", dict(small_case.phases), label)
    normal = inpaint_case(case, "median", None, resolve_config("smoke"))
    assert not normal.extras["inpaint_mask"].array.any()
    for name in PHASES:
        assert np.array_equal(normal.phases[name].array, case.phases[name].array)


def make_run(tmp_path: Path, cases: list[Case]) -> Path:
    """A smoke run folder whose register stage is done: config, manifest with a split, registered/<case>/."""
    run = RunFolder(tmp_path / "run")
    config = resolve_config("smoke")
    run.save_config(config)
    ids = [case.case_id for case in cases]
    write_manifest(run, cases, train=ids[:-2], validation=ids[-2:-1], test=ids[-1:], dataset=str(tmp_path / "data"))
    for case in cases:
        put_case(run, "registered", case)
    mark_finished(run, config, "register")
    return run.root


def test_commands_write_the_documented_files(small_cases: list[Case], tmp_path: Path, capsys) -> None:
    run_dir = make_run(tmp_path, small_cases)
    assert main(["train-inpainter", "--run", str(run_dir), "--device", "cpu", "--set", "inpaint.steps=2"]) == 0
    model = run_dir / "models" / "inpainter"
    for name in ("config.json", "weights.safetensors", "training_state.pt", "log.csv", "curves.png"):
        assert (model / name).is_file(), name
    assert main(["inpaint", "--run", str(run_dir), "--device", "cpu"]) == 0
    assert "normal cases in" in capsys.readouterr().out
    for case in small_cases:
        folder = run_dir / "normal" / case.case_id
        names = sorted(p.name for p in folder.iterdir())
        assert names == sorted([f"{p}.nii.gz" for p in PHASES] + ["inpaint_mask.nii.gz", "label.nii.gz"])
        assert read_volume(folder / "inpaint_mask.nii.gz").array.any()
        assert (read_volume(folder / "label.nii.gz").array != 2).all()
    test_case = small_cases[-1].case_id
    assert (run_dir / "report" / "figures" / f"inpaint_{test_case}.png").is_file()
    assert (run_dir / ".stages" / "inpaint.json").is_file()


def test_commands_refuse_bad_input_in_one_line(small_cases: list[Case], tmp_path: Path, capsys) -> None:
    run_dir = make_run(tmp_path, small_cases)
    assert main(["inpaint", "--run", str(run_dir), "--method", "blur"]) == 2
    assert "choose one of ffc, median, mean-fill" in capsys.readouterr().err
    assert main(["inpaint", "--run", str(run_dir), "--method", "ffc"]) == 2
    assert "train-inpainter" in capsys.readouterr().err
    assert main(["train-inpainter", "--run", str(tmp_path / "nowhere")]) == 2
    assert main(["inpaint", "--run", str(run_dir), "--method", "median"]) == 0
    assert not (run_dir / "models" / "inpainter" / "weights.safetensors").exists()


def test_the_figure_shows_a_case_with_a_tumor(small_cases: list[Case], tmp_path: Path) -> None:
    last = small_cases[-1]  # the test case the figure used to take, whatever it held
    clean = Case(last.case_id, dict(last.phases), last.label.with_array(np.minimum(last.label.array, 1)))
    run_dir = make_run(tmp_path, small_cases[:-1] + [clean])
    assert main(["inpaint", "--run", str(run_dir), "--method", "median"]) == 0
    figures = [p.name for p in (run_dir / "report" / "figures").glob("inpaint_*.png")]
    assert figures == [f"inpaint_{small_cases[0].case_id}.png"]
