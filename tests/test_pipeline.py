"""The pipeline over a run folder: ingest, split, stamps, skipping up-to-date stages."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from builders import tiny_case
from diff4mmlits.config import resolve_config
from diff4mmlits.data.case import Case
from diff4mmlits.data.native import write_case_folder
from diff4mmlits.errors import InputError
from diff4mmlits.ingest import ingest_dataset, split_cases
from diff4mmlits.pipeline import STAGES, get_stage, run_pipeline
from diff4mmlits.runfolder import RunFolder
from diff4mmlits.stage import Stage, run_stage


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    for i in range(5):
        write_case_folder(tiny_case(f"case_{i:03d}", i), tmp_path / "data" / f"case_{i:03d}")
    return tmp_path / "data"


def test_split_is_deterministic_disjoint_and_covering() -> None:
    ids = [f"c{i}" for i in range(10)]
    split = split_cases(ids, seed=3, test_fraction=0.2, validation_fraction=0.25)
    assert split == split_cases(list(reversed(ids)), seed=3, test_fraction=0.2, validation_fraction=0.25)
    parts = [set(split[k]) for k in ("train", "validation", "test")]
    assert set().union(*parts) == set(ids)
    assert sum(len(p) for p in parts) == len(ids)
    assert len(split["test"]) == 2 and len(split["validation"]) == 2
    assert split != split_cases(ids, seed=4, test_fraction=0.2, validation_fraction=0.25)


def test_tiny_datasets_keep_at_least_one_training_case() -> None:
    assert split_cases(["a", "b"], 0, 0.2, 0.2) == {"train": ["a", "b"], "validation": [], "test": []}
    three = split_cases(["a", "b", "c"], 0, 0.2, 0.2)
    assert len(three["test"]) == 1 and len(three["train"]) == 2


def test_ingest_writes_manifest_with_geometry_and_checksums(tiny_dataset: Path, tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    manifest = ingest_dataset(tiny_dataset, run, resolve_config("smoke"))
    assert run.manifest_path.is_file()
    assert [c["id"] for c in manifest["cases"]] == [f"case_{i:03d}" for i in range(5)]
    first = manifest["cases"][0]
    assert set(first["phases"]) == {"AP", "PVP"}
    assert first["phases"]["PVP"]["spacing_mm"] == [2.0, 1.5, 1.5]
    tumor_voxels = int((tiny_case("case_000", 0).label.array == 2).sum())
    assert tumor_voxels > 0 and first["label"]["tumor_ml"] == pytest.approx(tumor_voxels * 2.0 * 1.5 * 1.5 / 1000, abs=0.01)
    checksums = {c["phases"]["PVP"]["checksum"] for c in manifest["cases"]}
    assert len(checksums) == 5  # different noise → different checksums


def test_ingest_refuses_a_bad_dataset_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty dataset"):
        ingest_dataset(tmp_path / "empty", RunFolder(tmp_path / "run"), resolve_config("smoke"))
    assert not (tmp_path / "run" / "manifest.json").exists()


def healthy_scan(case_id: str, seed: int) -> Case:
    """``tiny_case`` without its tumor: the label liver only."""
    case = tiny_case(case_id, seed)
    return Case(case_id, case.phases, case.label.with_array((case.label.array > 0).astype(case.label.array.dtype)))


def test_healthy_scans_are_kept_out_of_every_split(tiny_dataset: Path, tmp_path: Path) -> None:
    for i in range(2):
        write_case_folder(healthy_scan(f"healthy_{i}", 10 + i), tiny_dataset / f"healthy_{i}")
    without = ingest_dataset(tiny_dataset, RunFolder(tmp_path / "without"), resolve_config("smoke"))
    assert "healthy" not in without["split"]  # an unused setting leaves the manifest as it was
    assert len(sum((without["split"][k] for k in ("train", "validation", "test")), [])) == 7
    config = resolve_config("smoke", overrides=["data.healthy_cases=healthy_*"])
    run = RunFolder(tmp_path / "with")
    manifest = ingest_dataset(tiny_dataset, run, config)
    assert manifest["split"]["healthy"] == ["healthy_0", "healthy_1"]
    rest = [i for k in ("train", "validation", "test") for i in manifest["split"][k]]
    assert sorted(rest) == [f"case_{i:03d}" for i in range(5)]
    # the real cases split as in a dataset without the healthy scans
    plain = split_cases([f"case_{i:03d}" for i in range(5)], config.seed, config.data.test_fraction,
                        config.data.validation_fraction)
    assert {k: manifest["split"][k] for k in plain} == plain
    assert run.split("healthy") == ["healthy_0", "healthy_1"]
    assert run.case_ids(("train", "healthy"))[-2:] == ["healthy_0", "healthy_1"]
    assert RunFolder(tmp_path / "without").split("healthy") == []


def test_healthy_cases_that_are_not_healthy_or_missing_are_one_line(tiny_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="'scan_\\*' matches no case"):
        ingest_dataset(tiny_dataset, RunFolder(tmp_path / "a"), resolve_config("smoke", overrides=["data.healthy_cases=scan_*"]))
    with pytest.raises(InputError, match="case_001: named in data.healthy_cases but its label holds a tumor"):
        ingest_dataset(tiny_dataset, RunFolder(tmp_path / "b"), resolve_config("smoke", overrides=["data.healthy_cases=case_001"]))
    assert not (tmp_path / "a" / "manifest.json").exists() and not (tmp_path / "b" / "manifest.json").exists()


def test_healthy_cases_setting_takes_one_pattern_or_a_list() -> None:
    assert resolve_config("smoke", overrides=["data.healthy_cases=healthy_*"]).data.healthy_cases == ("healthy_*",)
    assert resolve_config("smoke", overrides=["data.healthy_cases=[a, b_*]"]).data.healthy_cases == ("a", "b_*")
    assert resolve_config("smoke", overrides=["data.healthy_cases=a,b"]).data.healthy_cases == ("a", "b")
    assert resolve_config("smoke").data.healthy_cases == ()


def test_run_pipeline_writes_config_previews_report_and_skips_when_up_to_date(tiny_dataset: Path, tmp_path: Path, monkeypatch) -> None:
    calls: list[str] = []
    probe = Stage("probe", "counts its runs", lambda run, config: calls.append("probe"), ("preview",), ())
    monkeypatch.setattr("diff4mmlits.pipeline.STAGES", [probe, *[s for s in STAGES if s.name in ("previews", "report")]])
    config = resolve_config("smoke")
    run = RunFolder(tmp_path / "run")
    run_pipeline(tiny_dataset, run, config)
    assert run.config_path.is_file() and run.load_config() == config
    assert len(list(run.previews_dir.glob("*.png"))) == 5
    page = (run.report_dir / "index.html").read_text()
    assert "case_004" in page and "figures/previews_case_000.png" in page
    assert calls == ["probe"]
    run_pipeline(tiny_dataset, run, config)
    assert calls == ["probe"], "an up-to-date stage must be skipped"
    changed = resolve_config("smoke", overrides=["preview.window_hu=[-100, 200]"])
    run_pipeline(tiny_dataset, run, changed)
    assert calls == ["probe", "probe"], "a changed config section must re-run the stage"
    run_pipeline(tiny_dataset, run, changed, force=True)
    assert calls == ["probe"] * 3


def test_a_run_folder_saved_by_another_version_is_rerun_with_the_given_configuration(
        tiny_dataset: Path, tmp_path: Path, monkeypatch, caplog) -> None:
    """``run`` and ``demo`` give the whole configuration; the run folder's saved one is only compared.
    One that no longer validates (a setting since removed, e.g. segment.loader_thread) is replaced
    with a warning instead of stopping the run (it did: 'unknown setting')."""
    calls: list[str] = []
    probe = Stage("probe", "counts its runs", lambda run, config: calls.append("probe"), ("preview",), ())
    monkeypatch.setattr("diff4mmlits.pipeline.STAGES", [probe])
    config = resolve_config("smoke")
    run = RunFolder(tmp_path / "run")
    run_pipeline(tiny_dataset, run, config)
    run.config_path.write_text(run.config_path.read_text().replace("segment:\n", "segment:\n  loader_thread: true\n", 1))
    with pytest.raises(InputError, match="unknown setting 'segment.loader_thread'"):
        run.load_config()
    with caplog.at_level("WARNING", logger="diff4mmlits"):
        run_pipeline(tiny_dataset, run, config)
    assert run.load_config() == config
    assert any("loader_thread" in r.getMessage() and "replaced" in r.getMessage() for r in caplog.records)
    assert calls == ["probe"]  # its own settings (preview) are what its stamp recorded: still up to date


def test_a_failed_stage_leaves_no_stamp(tiny_dataset: Path, tmp_path: Path) -> None:
    def explode(run: RunFolder, config) -> None:
        raise InputError("boom")

    run = RunFolder(tmp_path / "run")
    config = resolve_config("smoke")
    ingest_dataset(tiny_dataset, run, config)
    with pytest.raises(InputError):
        run_stage(run, Stage("explode", "fails", explode), config)
    assert run.read_stamp("explode") is None


def test_unknown_stage_is_one_line() -> None:
    with pytest.raises(InputError, match="unknown stage 'nope'"):
        get_stage("nope")


@pytest.fixture(scope="module")
def ap_annotated_dataset(tmp_path_factory) -> Path:
    """5 phantom cases with the label drawn on AP (the phantom's AP truth) and case_000 without PVP."""
    from diff4mmlits.data.io import write_volume
    from diff4mmlits.data.phantom import TRUTH_FOLDER, read_phantom_truth, write_phantom_dataset

    dataset = write_phantom_dataset(tmp_path_factory.mktemp("ap") / "data", cases=5, seed=0, size=32)
    for case in sorted(p for p in dataset.iterdir() if p.is_dir() and not p.name.startswith("_")):
        write_volume(read_phantom_truth(dataset, case.name).phase_labels["AP"], case / "label.nii.gz")
    (dataset / "case_000" / "PVP.nii.gz").unlink()
    shutil.rmtree(dataset / TRUTH_FOLDER)
    return dataset


def test_every_stage_honours_the_annotated_phase(ap_annotated_dataset: Path, tmp_path: Path) -> None:
    """The whole pipeline on an AP-annotated set whose training case_000 has no PVP (synthesize read every
    case as PVP-annotated and stopped at 'the annotated phase PVP is missing')."""
    run = RunFolder(tmp_path / "run")
    config = resolve_config("smoke", overrides=["data.annotated_phase=AP"])
    run_pipeline(ap_annotated_dataset, run, config)
    assert "case_000" in run.split("train")
    assert all(run.read_stamp(stage.name) is not None for stage in STAGES if not stage.always_runs)
    for area in ("registered", "normal"):
        case = run.read_case(area, "case_000")
        assert case.annotated_phase == "AP" and "PVP" not in case.phases
    synthetic = run.read_cases("synthetic", "train")
    assert {run.case_source("synthetic", c.case_id) for c in synthetic} == set(run.split("train"))
    assert all(c.annotated_phase == "AP" for c in synthetic)
    (test_id,) = run.split("test")
    assert (run.predictions_dir / f"{test_id}.nii.gz").is_file() and (run.report_dir / "metrics.csv").is_file()


def test_run_refuses_a_run_folder_made_from_another_dataset(tiny_dataset: Path, tmp_path: Path) -> None:
    """``run OTHER --run R`` switched R's manifest to OTHER and left R's registered cases beside the new ones."""
    run = RunFolder(tmp_path / "run")
    config = resolve_config("smoke")
    run_pipeline(tiny_dataset, run, config, only=["previews"])
    other = tmp_path / "other"
    shutil.copytree(tiny_dataset, other)
    with pytest.raises(InputError, match="made from .* not .*other; use another --run folder"):
        run_pipeline(other, run, config, only=["previews"])
    assert run.dataset_path() == tiny_dataset.resolve()


def test_a_refused_dataset_leaves_the_run_folder_as_it_was(tiny_dataset: Path, tmp_path: Path) -> None:
    """``run`` saved its configuration before validating the dataset: a refused dataset left a new run
    folder holding only config.yaml, and replaced an existing folder's configuration."""
    config = resolve_config("smoke")
    (tiny_dataset / "case_001" / "label.nii.gz").unlink()
    fresh = RunFolder(tmp_path / "fresh")
    with pytest.raises(InputError, match="case_001: no label file"):
        run_pipeline(tiny_dataset, fresh, config, only=["previews"])
    assert not fresh.root.exists()

    shutil.rmtree(tiny_dataset / "case_001")
    run = RunFolder(tmp_path / "run")
    run_pipeline(tiny_dataset, run, config, only=["previews"])
    saved = (run.root / "config.yaml").read_bytes()
    write_case_folder(tiny_case("case_009", 9), tiny_dataset / "case_009")
    (tiny_dataset / "case_009" / "label.nii.gz").unlink()
    with pytest.raises(InputError, match="case_009: no label file"):
        run_pipeline(tiny_dataset, run, resolve_config("smoke", overrides=["seed=7"]), only=["previews"])
    assert (run.root / "config.yaml").read_bytes() == saved


def test_a_run_folder_in_the_dataset_is_refused_before_anything_is_written(tiny_dataset: Path, tmp_path: Path,
                                                                            capsys) -> None:
    """``run DATASET --run DATASET`` (which ``train --run DATASET``'s hint spelled out) wrote config.yaml,
    manifest.json, previews/ and registered/ among the cases and then stopped, leaving a dataset that
    validate refused; ``--run DATASET/runs/x`` was refused but left an empty DATASET/runs/; a refused
    dataset left the empty parents of a new run folder."""
    from diff4mmlits.cli import main

    before = sorted(p.relative_to(tiny_dataset) for p in tiny_dataset.rglob("*"))
    for run_dir, words in ((tiny_dataset, "is the DATASET"), (tiny_dataset / "runs" / "x", "is inside the DATASET")):
        for command in (["run", str(tiny_dataset), "--run", str(run_dir), "--preset", "smoke"],
                        ["register", str(tiny_dataset), "--run", str(run_dir), "--preset", "smoke"]):
            capsys.readouterr()
            assert main(command) == 2
            assert f"--run {words}: the run folder's files would overwrite or mix" in capsys.readouterr().err
    assert sorted(p.relative_to(tiny_dataset) for p in tiny_dataset.rglob("*")) == before
    (tiny_dataset / "case_001" / "label.nii.gz").unlink()
    assert main(["run", str(tiny_dataset), "--run", str(tmp_path / "a" / "b" / "run"), "--preset", "smoke"]) == 2
    assert not (tmp_path / "a").exists()


def test_a_stage_whose_outputs_were_deleted_runs_again(tiny_dataset: Path, tmp_path: Path) -> None:
    """``rm -rf RUN/registered/case_001`` (or all of registered/) left register 'up to date, skipped',
    and every later stage stopped on the missing case, telling the user to rerun ``run``, which skipped
    it again."""
    run = RunFolder(tmp_path / "run")
    config = resolve_config("smoke")
    run_pipeline(tiny_dataset, run, config, only=["register"])
    register = get_stage("register")
    assert not run_stage(run, register, config).ran  # up to date
    shutil.rmtree(run.registered_dir / "case_001")
    assert run_stage(run, register, config).ran
    assert (run.registered_dir / "case_001").is_dir()
    shutil.rmtree(run.registered_dir)
    assert run_stage(run, register, config).ran and not run_stage(run, register, config).ran
    stage = Stage("makes-a-file", "writes out.txt", lambda r, c: (r.root / "out.txt").write_text("x"),
                  outputs=("out.txt",))
    assert run_stage(run, stage, config).ran and not run_stage(run, stage, config).ran
    (run.root / "out.txt").unlink()
    assert run_stage(run, stage, config).ran and (run.root / "out.txt").is_file()
