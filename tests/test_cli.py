"""The command line's contract: --help for every command, one line for bad input (exit 2), one
line naming a log file for a bug (exit 1)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from diff4mmlits import cli
from diff4mmlits.cli import app, main


def _commands() -> list[str]:
    return [command.name or command.callback.__name__.replace("_", "-") for command in app.registered_commands]


def test_top_level_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in _commands():
        assert name in out


@pytest.mark.parametrize("command", _commands())
def test_every_command_explains_itself(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"Usage: diff4mmlits {command}" in out
    description = out.split("\n\n")[1].strip()
    assert len(description.split()) >= 5, f"{command} --help says too little: {description!r}"


def test_unexpected_error_is_one_line_naming_a_log_with_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import diff4mmlits.data.validate as validate

    def broken(*args, **kwargs):
        raise RuntimeError("something inside broke (≤ 20 mm)\nsecond line of the message")

    monkeypatch.setattr(validate, "validate_dataset", broken)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["validate", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("internal error (RuntimeError: something inside broke (≤ 20 mm)); traceback in ")
    log = Path(err[0].rsplit("traceback in ", 1)[1])
    assert log.is_file() and log.parent.parent == tmp_path
    text = log.read_text()
    assert "diff4mmlits validate" in text and "Traceback (most recent call last)" in text
    assert "RuntimeError: something inside broke (≤ 20 mm)" in text and "def broken" not in err[0]


def test_input_error_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "absent")]) == 2
    assert main(["export-nnunet", str(tmp_path / "absent"), str(tmp_path / "raw"), "--dataset-id", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {tmp_path / 'absent'}: dataset folder not found; check the path",
        f"error: {tmp_path / 'absent'}: dataset folder not found; check the path",
    ]
    assert not (tmp_path / "raw").exists()


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 2
    assert main(["export-nnunet", "a", "b"]) == 2  # --dataset-id is required
    assert main(["no-such-command"]) == 2
    assert "Usage" in capsys.readouterr().err


def test_keyboard_interrupt(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "app", interrupted)
    assert main(["validate", str(tmp_path)]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_export_nnunet_of_a_run_leaves_its_healthy_scans_out(tmp_path) -> None:
    import json

    from builders import liver_case
    from diff4mmlits.config import resolve_config
    from diff4mmlits.data.case import Case
    from diff4mmlits.runfolder import RunFolder
    from finished_stages import put_case, write_manifest

    run = RunFolder(tmp_path / "run")
    run.root.mkdir()
    run.save_config(resolve_config("smoke"))
    cases = [liver_case(f"case_{i}", seed=i, shape=(12, 12, 12)) for i in range(3)]
    scan = liver_case("healthy_0", seed=9, shape=(12, 12, 12))
    healthy = Case("healthy_0", scan.phases, scan.label.with_array((scan.label.array > 0).astype(scan.label.array.dtype)))
    for case in [*cases, healthy]:
        put_case(run, "registered", case)
    for source in ("case_0", "healthy_0"):
        painted = Case(f"{source}_s000", cases[0].phases, cases[0].label)
        put_case(run, "synthetic", painted, **{"provenance.json": {"case": painted.case_id, "normal_case": source}})
    write_manifest(run, [*cases, healthy], train=["case_0", "case_1"], validation=[], test=["case_2"])
    manifest = run.load_manifest()
    manifest["split"]["healthy"] = ["healthy_0"]
    run.save_manifest(manifest)
    assert main(["export-nnunet", "--run", str(run.root), str(tmp_path / "raw"), "--dataset-id", "7", "--folds", "2"]) == 0
    target = tmp_path / "raw" / "Dataset007_Diff4MMLiTS"
    assert sorted(p.name for p in (target / "labelsTr").iterdir()) == [
        "case_0.nii.gz", "case_0_s000.nii.gz", "case_1.nii.gz", "healthy_0_s000.nii.gz"]
    splits = json.loads((target / "splits_final.json").read_text())
    assert all("healthy_0_s000" in fold["train"] for fold in splits)  # no fold validates the healthy patient


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one ``error:`` line on stderr (log lines such as "inpaint: running" may come before it)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_a_file_where_a_folder_must_be_is_one_line(tmp_path: Path, phantom_dataset: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A path whose parent is a file, or an output folder that is a file, was a traceback (exit 1)."""
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    assert main(["phantom", str(afile / "x"), "--cases", "1", "--size", "16"]) == 2
    assert str(afile) in _one_error_line(capsys)
    assert main(["register", str(phantom_dataset), "--run", str(afile), "--preset", "smoke"]) == 2
    assert str(afile) in _one_error_line(capsys)
    assert afile.read_text() == "not a folder"


def test_a_damaged_manifest_or_saved_configuration_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from diff4mmlits.config import resolve_config
    from diff4mmlits.runfolder import RunFolder

    run = RunFolder(tmp_path / "run")
    run.save_config(resolve_config("smoke"))
    run.write_stamp("register", "finished")
    for text in ("{bad json", "{}", "[1, 2]"):
        run.manifest_path.write_text(text)
        assert main(["inpaint", "--run", str(run.root), "--method", "median"]) == 2
        line = _one_error_line(capsys)
        assert "manifest.json: damaged" in line and "diff4mmlits run DATASET" in line
    run.config_path.write_text("")  # an empty saved configuration is not the defaults
    assert main(["train", "--run", str(run.root)]) == 2
    assert "config.yaml: is empty" in _one_error_line(capsys)


def test_a_model_zip_with_a_damaged_manifest_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import zipfile

    from diff4mmlits.modelzip import MANIFEST_NAME

    with zipfile.ZipFile(tmp_path / "m.zip", "w") as archive:
        archive.writestr(MANIFEST_NAME, "{x")
        archive.writestr("config.json", "{}")
    assert main(["import-model", str(tmp_path / "m.zip"), str(tmp_path / "model")]) == 2
    assert f"{MANIFEST_NAME} in the zip is damaged" in _one_error_line(capsys)
    assert not (tmp_path / "model").exists()


def test_run_only_lists_every_stage_of_the_pipeline(capsys: pytest.CaptureFixture[str]) -> None:
    from diff4mmlits.pipeline import stage_names

    assert main(["run", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split()).replace("- ", "-")  # names wrapped at their hyphen
    for name in stage_names():
        assert name in text, name
