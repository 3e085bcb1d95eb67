"""The segment and evaluate stages over a run folder: train → predict → evaluate → report."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from diff4mmlits.cli import main
from diff4mmlits.config import resolve_config
from diff4mmlits.data.case import Case
from diff4mmlits.data.io import read_volume
from diff4mmlits.data.native import write_case_folder
from diff4mmlits.errors import InputError
from diff4mmlits.ingest import ingest_dataset
from diff4mmlits.pipeline import get_stage, run_stage, write_run_report
from diff4mmlits.runfolder import RunFolder
from diff4mmlits.segment.stage import painter_device, train_run
from diff4mmlits.segment.train import loader_worker_count
from finished_stages import mark_finished, put_case


@pytest.fixture
def run_folder(tiny_case, tmp_path) -> tuple[RunFolder, Path]:
    """A smoke run over 5 registered cases (train 3, validation 1, test 1), registered/ filled in."""
    dataset = tmp_path / "dataset"
    for i in range(5):
        write_case_folder(tiny_case(f"case_{i}", seed=i), dataset / f"case_{i}")
    run = RunFolder(tmp_path / "run")
    config = resolve_config("smoke", overrides=["segment.synthetic=none"])
    run.save_config(config)
    ingest_dataset(dataset, run, config)
    for case in run.read_input_cases():  # these cases are registered already: put them where register writes
        put_case(run, "registered", case)
    mark_finished(run, config, "register")
    return run, dataset


def test_train_predict_evaluate_report_over_a_run(run_folder, capsys) -> None:
    run, _ = run_folder
    assert main(["train", "--run", str(run.root), "--device", "cpu", "--phases", "PVP,AP,NC,DP"]) == 0
    out = capsys.readouterr().out
    assert "segmenter plan: target spacing 2×1.5×1.5 mm" in out and "train: model in" in out
    assert run.read_stamp("train") is not None
    config = run.load_config()
    run_stage(run, get_stage("predict"), config)
    (test_id,) = run.split("test")
    label = read_volume(run.predictions_dir / f"{test_id}.nii.gz", kind="label")
    assert label.same_grid(read_volume(run.registered_dir / test_id / "PVP.nii.gz"))
    run_stage(run, get_stage("evaluate"), config)
    assert (run.report_dir / "metrics.csv").is_file() and (run.report_dir / "figures" / "boxplots.png").is_file()
    page = write_run_report(run, config)
    html = page.read_text()
    assert "Segmenter" in html and "Segmentation of the held-out test cases" in html
    links = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any("curves.png" in link for link in links) and any("boxplots.png" in link for link in links)
    assert all((page.parent / link).is_file() for link in links)


def test_on_the_fly_synthesis_reads_only_train_split_normal_ct(run_folder, painter) -> None:
    run, _ = run_folder
    for case in run.read_cases("registered"):
        # the inpaint stage's output for every case: phases, and the label with its tumor turned to liver
        put_case(run, "normal", Case(case.case_id, case.phases, case.label.with_array(np.minimum(case.label.array, 1))))
    painted: list[str] = []

    class RecordingPainter:
        def paint(self, normal: Case, rng: np.random.Generator) -> Case:
            painted.append(normal.case_id)
            return painter.paint(normal, rng)

    config = resolve_config("smoke", overrides=["segment.synthetic=on-the-fly", "segment.synthetic_ratio=0.5"])
    lines: list[str] = []
    result = train_run(run, config, painter=RecordingPainter(), echo=lines.append)
    assert any("3 normal CT for on-the-fly synthesis (ratio 0.5)" in line for line in lines)  # stage two of the cascade
    assert painted and set(painted) <= set(run.split("train"))  # validation/test CT never leak into training
    shares = [float(r["synthetic_share"]) for r in result.rows]
    assert 0.0 < np.mean(shares) < 1.0
    assert (run.segmenter_dir / "weights.safetensors").is_file()


def test_missing_upstream_outputs_are_one_line(run_folder) -> None:
    run, _ = run_folder
    shutil.rmtree(run.registered_dir)
    config = resolve_config("smoke", overrides=["segment.synthetic=none"])
    with pytest.raises(InputError, match="registered/case_.* is missing; run 'diff4mmlits register"):
        train_run(run, config, echo=lambda _: None)


def test_the_pool_paints_on_the_training_device_and_per_sample_painting_in_the_loader_workers() -> None:
    """The paper preset on a GPU painted its pool on the CPU (the painter's device followed the loader
    workers, though the pool paints in a thread of the training process)."""
    cuda = torch.device("cuda")
    paper = resolve_config("paper", None, []).segment
    assert paper.synthetic_pool > 0 and painter_device(paper, cuda) == "cuda"
    per_sample = paper.model_copy(update={"synthetic_pool": 0})
    assert painter_device(per_sample, cuda) == "cpu"  # in the loader worker processes
    assert painter_device(per_sample.model_copy(update={"loader_workers": 0}), cuda) == "cuda"
    assert painter_device(per_sample.model_copy(update={"loader_workers": 0}), torch.device("cpu")) == "cpu"


def test_loader_workers_default_to_the_gpus_share_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    import diff4mmlits.segment.train as train_module

    monkeypatch.setattr(train_module, "usable_cores", lambda: 16)
    cuda = torch.device("cuda")
    assert loader_worker_count(None, cuda) == 12      # nnU-Net's 12 at most
    assert loader_worker_count(None, cuda, world_size=4) == 3
    assert loader_worker_count(None, torch.device("cpu")) == 2
    assert loader_worker_count(5, cuda) == 5 and loader_worker_count(0, cuda) == 0
    monkeypatch.setattr(train_module, "usable_cores", lambda: 1)
    assert loader_worker_count(None, cuda) == 1


def test_a_bad_phases_option_is_named_as_typed_and_lower_case_phases_are_read(run_folder, capsys) -> None:
    """``train --phases XX`` said "--set: setting 'segment.phases': …", naming an option the user never
    typed; ``--phases pvp`` was refused though phase files are read without regard to case."""
    run, _ = run_folder
    assert main(["train", "--run", str(run.root), "--device", "cpu", "--phases", "PVP,XX"]) == 2
    err = capsys.readouterr().err
    assert "error: --phases: " in err and "--set" not in err and "non-empty subset of NC,AP,PVP,DP" in err
    assert resolve_config("smoke", overrides=["segment.phases=pvp,ap"]).segment.phases == ("AP", "PVP")


def test_a_synthetic_ratio_without_synthetic_cases_is_refused_before_the_stamp_is_touched(run_folder, capsys) -> None:
    """``train --synthetic none --synthetic-ratio 0.5`` trained without a word about the ratio it ignored."""
    run, _ = run_folder
    assert main(["train", "--run", str(run.root), "--synthetic", "none", "--synthetic-ratio", "0.5"]) == 2
    assert "--synthetic-ratio 0.5 with --synthetic none: no synthetic case to mix in" in capsys.readouterr().err
    assert run.read_stamp("register") is not None
