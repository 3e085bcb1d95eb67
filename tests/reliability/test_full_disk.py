"""A full disk, a read-only or forbidden folder: one line naming the file, exit status 3, nothing
half-written in place, no stage stamped. SimpleITK does not raise when the disk fills up (it leaves
a short file), so its writer is replaced here by one that does just that."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from diff4mmlits.cli import main
from diff4mmlits.config import resolve_config
from diff4mmlits.data import io
from diff4mmlits.data.io import write_volume
from diff4mmlits.data.volume import Volume
from diff4mmlits.errors import StorageError
from diff4mmlits.runfolder import RunFolder
from diff4mmlits.stage import Stage, run_stage

REAL_WRITE_IMAGE = sitk.WriteImage


def write_short_file(image, name, useCompression=True):  # noqa: N803 (SimpleITK's name)
    """What SimpleITK does on a full disk: no exception, the file cut short."""
    REAL_WRITE_IMAGE(image, name, useCompression)
    data = Path(name).read_bytes()
    Path(name).write_bytes(data[: len(data) // 2])


def volume() -> Volume:
    return Volume(np.random.default_rng(0).normal(size=(6, 7, 8)).astype(np.float32), (2.0, 1.0, 1.0))


@pytest.mark.parametrize("name", ["PVP.nii.gz", "PVP.nii", "field.mha"])
def test_a_short_write_is_an_error_and_leaves_the_old_file(name: str, tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / name
    write_volume(volume(), path)
    before = path.read_bytes()
    monkeypatch.setattr(io.sitk, "WriteImage", write_short_file)
    with pytest.raises(StorageError, match="was not written"):
        write_volume(volume().with_array(volume().array + 1), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left


def test_predict_into_a_full_disk_exits_3_with_one_line_and_no_label(trained_model: Path, new_case_folder: Path,
                                                                      tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(io.sitk, "WriteImage", write_short_file)
    out = tmp_path / "labels"
    code = main(["predict", str(new_case_folder), str(out), "--model", str(trained_model), "--device", "cpu"])
    errors = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("error:")]
    assert code == 3
    assert len(errors) == 1 and "case_new.nii.gz" in errors[0] and "free some space" in errors[0]
    assert not out.exists() or not list(out.glob("*.nii*"))


def test_a_stage_whose_write_fails_is_not_stamped(tmp_path: Path, monkeypatch) -> None:
    run = RunFolder(tmp_path / "run")
    config = resolve_config("smoke")
    run.save_config(config)
    stage = Stage("write-one", "writes one volume", lambda r, c: write_volume(volume(), r.root / "out.nii.gz"))
    monkeypatch.setattr(io.sitk, "WriteImage", write_short_file)
    with pytest.raises(StorageError):
        run_stage(run, stage, config)
    assert run.read_stamp("write-one") is None and not (run.root / "out.nii.gz").exists()
    monkeypatch.setattr(io.sitk, "WriteImage", REAL_WRITE_IMAGE)  # space freed: the rerun works and stamps
    assert run_stage(run, stage, config).ran and run.read_stamp("write-one") is not None


@pytest.mark.parametrize(("code", "words"), [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only"),
                                             (errno.EACCES, "permission denied")])
def test_environment_errors_are_one_line_with_exit_status_3(code: int, words: str, tmp_path: Path, monkeypatch,
                                                            capsys) -> None:
    out = tmp_path / "phantom"

    def refuse(fd: int) -> None:
        raise OSError(code, os.strerror(code), str(out / "case_000" / "PVP.nii.gz"))

    monkeypatch.setattr("diff4mmlits.files.os.fsync", refuse)
    assert main(["phantom", str(out), "--cases", "1", "--size", "16"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and "PVP.nii.gz" in err[0] and "Traceback" not in err[0]
    assert not list(out.rglob("*.nii.gz"))


@pytest.mark.parametrize(("denied", "words"), [("read-only", "the file system is read-only"),
                                               ("forbidden", "permission denied")])
def test_predict_into_an_unwritable_folder_stops_before_inference_naming_the_folder(
        denied: str, words: str, trained_model: Path, new_case_folder: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """The error came after every case was registered and segmented, and named a hidden temporary file
    ('.case_new.nii.gz.ih1roxef.tmp.nii.gz') instead of the output."""
    from diff4mmlits.segment import stage as segment_stage

    out = tmp_path / "locked" / "labels"
    out.parent.mkdir()
    locked = str(out.parent)
    if denied == "read-only":
        real_statvfs = os.statvfs
        monkeypatch.setattr("diff4mmlits.files.os.statvfs", lambda p: os.statvfs_result(
            (*real_statvfs(p)[:8], os.ST_RDONLY, 255)) if str(p) == locked else real_statvfs(p))
    else:
        real_access = os.access
        monkeypatch.setattr("diff4mmlits.files.os.access", lambda p, mode: False if str(p) == locked else real_access(p, mode))
    monkeypatch.setattr(segment_stage, "predict_cases", lambda *a, **k: pytest.fail("predicted into a folder it cannot write"))
    code = main(["predict", str(new_case_folder), str(out), "--model", str(trained_model), "--device", "cpu"])
    errors = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("error:")]
    assert code == 3 and len(errors) == 1 and words in errors[0] and str(out) in errors[0] and ".tmp" not in errors[0]
    assert not out.exists()


def test_a_temporary_file_that_cannot_be_made_is_named_as_the_file_asked_for(tmp_path: Path, monkeypatch) -> None:
    from diff4mmlits.files import write_text_atomic

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".x.txt.abc123.tmp.txt"))

    monkeypatch.setattr("diff4mmlits.files.tempfile.mkstemp", refuse)
    with pytest.raises(OSError) as caught:
        write_text_atomic(tmp_path / "x.txt", "x")
    assert caught.value.filename == str(tmp_path / "x.txt")


def test_a_full_disk_while_writing_a_phantom_names_the_file_as_it_would_have_been(tmp_path: Path, monkeypatch,
                                                                                   capsys) -> None:
    """The error named '.phantom.tmp/case_000/NC.nii.gz', a staging folder already gone when it was read."""
    monkeypatch.setattr(io.sitk, "WriteImage", write_short_file)
    out = tmp_path / "phantom"
    assert main(["phantom", str(out), "--cases", "1", "--size", "16", "--workers", "1"]) == 3
    [line] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert ".phantom.tmp" not in line and f"{out}/case_000/" in line, line
    assert not out.exists() and not (tmp_path / ".phantom.tmp").exists()
