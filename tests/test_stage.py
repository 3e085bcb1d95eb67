"""The Stage contract: run_stage alone stamps; a stage command finished by hand is up to date for
``run``; one interrupted part-way (an error, Ctrl-C, ``kill -9``) is not; upstream stages must have
finished before a stage reads their outputs."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from builders import tiny_case
from diff4mmlits import pipeline
from diff4mmlits.cli import main
from diff4mmlits.config import resolve_config
from diff4mmlits.data.native import write_case_folder
from diff4mmlits.errors import InputError
from diff4mmlits.ingest import ingest_dataset
from diff4mmlits.pipeline import get_stage, run_pipeline
from diff4mmlits.runfolder import RunFolder, fingerprint_of
from diff4mmlits.stage import Stage, is_up_to_date, run_stage
from finished_stages import mark_finished

COMMANDS: dict[str, object] = {
    "register": [],
    "train-inpainter": Path("models/inpainter"),
    "inpaint": [],
    "train-autoencoder": {},
    "train-synthesizer": {},
    "synthesize": {},
    "train": SimpleNamespace(epochs_done=1),
}
"""Every stage command of the pipeline, with what its work returns (the command prints from it)."""


@pytest.fixture
def started_run(tmp_path: Path) -> tuple[Path, RunFolder]:
    """A smoke run folder over 5 tiny cases, ingested (nothing run yet)."""
    dataset = tmp_path / "data"
    for i in range(5):
        write_case_folder(tiny_case(f"case_{i:03d}", i), dataset / f"case_{i:03d}")
    run = RunFolder(tmp_path / "run")
    config = resolve_config("smoke")
    run.save_config(config)
    ingest_dataset(dataset, run, config)
    return dataset, run


def _command_line(name: str, dataset: Path, run: RunFolder) -> list[str]:
    return [name, str(dataset), "--run", str(run.root)] if name == "register" else [name, "--run", str(run.root)]


def _with_work(monkeypatch, name: str, work) -> None:
    """Replace stage ``name``'s work (and completeness check) in the pipeline the CLI and ``run`` read."""
    stages = [dataclasses.replace(s, work=work, is_complete=None, outputs=()) if s.name == name else s
              for s in pipeline.STAGES]
    monkeypatch.setattr(pipeline, "STAGES", stages)


def _finish_upstream(run: RunFolder, name: str) -> None:
    before = [s.name for s in pipeline.STAGES][: [s.name for s in pipeline.STAGES].index(name)]
    mark_finished(run, run.load_config(), *before)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_run_does_not_redo_a_stage_command_that_finished(name: str, started_run, monkeypatch) -> None:
    dataset, run = started_run
    _finish_upstream(run, name)
    calls: list[str] = []

    def work(run_folder, config, **options):
        calls.append(name)
        return COMMANDS[name]

    _with_work(monkeypatch, name, work)
    assert main(_command_line(name, dataset, run)) == 0
    assert calls == [name] and run.read_stamp(name) is not None
    run_pipeline(dataset, run, run.load_config(), only=[name])
    assert calls == [name], f"'run' redid {name} after the command had finished it"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_run_redoes_a_stage_command_interrupted_part_way(name: str, started_run, monkeypatch) -> None:
    dataset, run = started_run
    _finish_upstream(run, name)
    mark_finished(run, run.load_config(), name)  # an earlier, finished run of the same stage
    seen_stamp: list[bool] = []

    def interrupted(run_folder, config, **options):
        seen_stamp.append(run_folder.read_stamp(name) is not None)
        (run_folder.root / "half-written").write_text("x")
        raise KeyboardInterrupt  # Ctrl-C, or a process killed in the middle of the work

    _with_work(monkeypatch, name, interrupted)
    assert main(_command_line(name, dataset, run)) == 130
    assert seen_stamp == [False], "the stamp must be cleared before the stage writes anything"
    assert run.read_stamp(name) is None
    calls: list[str] = []
    _with_work(monkeypatch, name, lambda run_folder, config, **options: calls.append(name) or COMMANDS[name])
    run_pipeline(dataset, run, run.load_config(), only=[name])
    assert calls == [name], f"'run' took an interrupted {name} for a finished one"


def test_a_stage_does_not_start_before_the_stages_it_reads_from(started_run) -> None:
    _, run = started_run
    config = run.load_config()
    with pytest.raises(InputError, match="'register' has not finished"):
        run_stage(run, get_stage("train-inpainter"), config)
    mark_finished(run, config, "register")
    with pytest.raises(InputError, match="'train-inpainter' has not finished"):
        run_stage(run, get_stage("inpaint"), config)
    # a stage that 'run' leaves out is named by the command that runs it (there is no 'train-cut-painter')
    cut = resolve_config("smoke", overrides=["synthesize.method=cut"])
    mark_finished(run, config, "train-inpainter")
    mark_finished(run, config, "inpaint")
    with pytest.raises(InputError, match=r"'train-cut-painter' has not finished .*; run 'diff4mmlits train-translator "
                                         r"--painter --run \S+' first$"):
        run_stage(run, get_stage("synthesize"), cut)
    # the median inpainter needs no trained network
    probe = dataclasses.replace(get_stage("inpaint"), work=lambda run_folder, config: "ran")
    median = resolve_config("smoke", overrides=["inpaint.method=median"])
    assert run_stage(run, probe, median).result == "ran"


def test_run_stage_returns_the_work_result_and_skips_when_up_to_date(started_run) -> None:
    _, run = started_run
    config = run.load_config()
    stage = Stage("probe", "returns 7", lambda run_folder, config, factor=1: 7 * factor, ("preview",))
    outcome = run_stage(run, stage, config, factor=2)
    assert outcome.ran and outcome.result == 14 and is_up_to_date(run, stage, config)
    assert not run_stage(run, stage, config).ran
    assert run_stage(run, stage, config, force=True).ran


def test_kill_9_during_a_stage_command_leaves_it_to_be_redone(phantom_dataset: Path, tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    command = [sys.executable, "-m", "diff4mmlits.cli", "register", str(phantom_dataset), "--run", str(run.root),
               "--preset", "smoke", "--workers", "1"]
    env = {**os.environ, "DIFF4MMLITS_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    subprocess.run(command, check=True, env=env, capture_output=True, timeout=300)
    config = run.load_config()
    assert is_up_to_date(run, get_stage("register"), config)
    process = subprocess.Popen([*command, "--force"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while run.read_stamp("register") is not None and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "register finished before it could be killed"
    assert not is_up_to_date(run, get_stage("register"), config)
    assert run_stage(run, get_stage("register"), config).ran
    assert is_up_to_date(run, get_stage("register"), config)


def _configs_of_every_method():
    """A smoke configuration for each way a stage can read upstream results."""
    for painter in ("ldm", "handcrafted", "cut"):
        for source in ("none", "offline", "on-the-fly"):
            for inpainter in ("ffc", "median"):
                yield resolve_config("smoke", overrides=[
                    f"synthesize.method={painter}", f"segment.synthesis_method={painter}",
                    f"segment.synthetic={source}", "segment.synthetic_ratio=0.5", f"inpaint.method={inpainter}"])


def test_every_stage_fingerprints_every_stage_it_reads_from() -> None:
    """What a stage needs (``needs``) is part of its fingerprint (``upstream``): a synthesize or train
    run with the CUT painter was called up to date after the painter had been retrained."""
    configs = list(_configs_of_every_method())
    for stage in [*pipeline.STAGES, *pipeline.OTHER_STAGES]:
        for config in configs:
            missing = set(stage.required_upstream(config)) - set(stage.upstream)
            assert not missing, (stage.name, missing, config.synthesize.method, config.segment.synthetic)


def test_a_retrained_cut_painter_makes_synthesis_and_training_stale(started_run) -> None:
    _, run = started_run
    config = resolve_config("smoke", overrides=["synthesize.method=cut", "segment.synthesis_method=cut"])
    mark_finished(run, config, "register", "train-inpainter", "inpaint", "train-cut-painter", "synthesize", "train")
    run.segmenter_dir.mkdir(parents=True)
    (run.segmenter_dir / "config.json").write_text("{}")  # what train leaves (its outputs)
    assert is_up_to_date(run, get_stage("synthesize"), config) and is_up_to_date(run, get_stage("train"), config)
    run.write_stamp("train-cut-painter", "retrained")
    assert not is_up_to_date(run, get_stage("synthesize"), config)
    assert not is_up_to_date(run, get_stage("train"), config)


def test_another_annotated_phase_makes_registration_stale(started_run) -> None:
    """``run ... --set data.annotated_phase=AP`` over a run registered onto PVP registers again (it
    was skipped, and every later stage read the PVP-registered cases as AP-annotated)."""
    from diff4mmlits.register.stage import case_fingerprint

    dataset, run = started_run
    config = run.load_config()
    mark_finished(run, config, "register")
    pvp_stamp = run.read_stamp("register")["fingerprint"]
    # a run folder annotated on PVP keeps the stamp it had before the phase was fingerprinted
    manifest = run.load_manifest()
    assert pvp_stamp == fingerprint_of("register", {"register": config.register.model_dump(mode="json")}, config.seed,
                                       {}, manifest["cases"], manifest["split"])
    assert case_fingerprint(config.register, manifest["cases"][0]) == fingerprint_of(
        "register", config.register.model_dump(mode="json"), manifest["cases"][0])
    ap = resolve_config("smoke", overrides=["data.annotated_phase=AP"])
    ingest_dataset(dataset, run, ap)
    assert not is_up_to_date(run, get_stage("register"), ap)
    assert case_fingerprint(ap.register, manifest["cases"][0], "AP") != case_fingerprint(config.register, manifest["cases"][0])


def test_a_bad_option_leaves_a_finished_stage_finished(started_run, tmp_path: Path, capsys) -> None:
    """``--device tpu`` or an ``--init-from`` folder of another model kind was refused only after the
    stage had cleared its stamp: a good model then counted as unfinished."""
    _, run = started_run
    mark_finished(run, run.load_config(), "register", "train-inpainter")
    stamp = run.read_stamp("train-inpainter")
    segmenter = tmp_path / "segmenter"
    segmenter.mkdir()
    (segmenter / "config.json").write_text('{"kind": "segmenter"}')
    for options in (["--device", "tpu"], ["--init-from", str(segmenter)]):
        assert main(["train-inpainter", "--run", str(run.root), *options]) == 2
        assert run.read_stamp("train-inpainter") == stamp, options
    assert "not a ffc-inpainter model folder" in capsys.readouterr().err


def test_run_with_a_bad_option_writes_nothing(tmp_path: Path, started_run) -> None:
    dataset, _ = started_run
    for options in (["--only", "bogus"], ["--device", "tpu"]):
        assert main(["run", str(dataset), "--run", str(tmp_path / "fresh"), "--preset", "smoke", *options]) == 2
        assert not (tmp_path / "fresh").exists(), options


def test_an_unknown_preset_over_an_existing_run_folder_is_named_as_such(started_run, capsys) -> None:
    dataset, run = started_run
    assert main(["register", str(dataset), "--run", str(run.root), "--preset", "bogus"]) == 2
    assert "unknown preset 'bogus'" in capsys.readouterr().err
