"""Atomic writes: a reader never sees half a file; a failed write keeps the old one."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from diff4mmlits.files import (
    atomic_path,
    read_json_or_none,
    staged_files,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)


def test_atomic_path_keeps_the_suffixes_and_renames(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "PVP.nii.gz"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".PVP.nii.gz.") and tmp.name.endswith(".tmp.nii.gz")
        tmp.write_bytes(b"data")
        assert not target.exists()
    assert target.read_bytes() == b"data"
    assert os.listdir(target.parent) == ["PVP.nii.gz"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path) -> None:
    target = write_text_atomic(tmp_path / "report.html", "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["report.html"]


def test_failure_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError), atomic_path(tmp_path / "x.json"):
        raise ValueError("no data")
    assert os.listdir(tmp_path) == []


def test_write_json_atomic_handles_numpy_paths_and_sets(tmp_path: Path) -> None:
    data = {"n": np.int64(3), "x": np.float32(0.5), "a": np.arange(3), "p": Path("a/b"), "s": {"b", "a"}, "t": (1, 2)}
    path = write_json_atomic(tmp_path / "m.json", data)
    assert json.loads(path.read_text()) == {"n": 3, "x": 0.5, "a": [0, 1, 2], "p": "a/b", "s": ["a", "b"], "t": [1, 2]}
    with pytest.raises(TypeError, match="cannot write object as JSON"):
        write_json_atomic(tmp_path / "bad.json", {"o": object()})
    assert sorted(os.listdir(tmp_path)) == ["m.json"]


def test_write_bytes_and_text(tmp_path: Path) -> None:
    assert write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert write_text_atomic(tmp_path / "t.txt", "héllo").read_text(encoding="utf-8") == "héllo"


def test_read_json_or_none_reads_back_and_tolerates_missing_or_broken_files(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "ok.json", {"stage": "register", "seconds": 1.5})
    assert read_json_or_none(tmp_path / "ok.json") == {"stage": "register", "seconds": 1.5}
    assert read_json_or_none(tmp_path / "missing.json") is None
    (tmp_path / "half.json").write_text('{"stage": "reg')  # a write cut short
    assert read_json_or_none(tmp_path / "half.json") is None
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00")
    assert read_json_or_none(tmp_path / "binary.json") is None


def test_atomic_write_follows_the_umask_not_mkstemp_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = write_json_atomic(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_failed_write_names_the_file_it_was_for(tmp_path: Path) -> None:
    """A writer handed an open file (zipfile) reports a full disk without a file name: the message said
    "cannot write a file"."""
    import errno

    from diff4mmlits.files import describe_os_error

    target = tmp_path / "model.zip"
    with pytest.raises(OSError) as err, atomic_path(target):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(target)
    assert describe_os_error(err.value).startswith(f"cannot write {target}: the disk is full")
    assert list(tmp_path.iterdir()) == []


def test_staged_files_land_whole_with_the_marker_last_or_not_at_all(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "report"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "overlay_old.png").write_text("old overlay")
    (out / "figures" / "keep.png").write_text("another writer's")
    (out / "metrics.csv").write_text("old")
    moves: list[str] = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (moves.append(Path(b).name), real_replace(a, b)))
    with staged_files(out, last="metrics.csv", replaces=("figures/overlay_*.png",)) as stage:
        (stage / "metrics.csv").write_text("new")
        (stage / "figures").mkdir()
        (stage / "figures" / "overlay_new.png").write_text("new overlay")
        (stage / "summary.txt").write_text("summary")
    assert moves[-1] == "metrics.csv" and sorted(moves) == ["metrics.csv", "overlay_new.png", "summary.txt"]
    files = {str(p.relative_to(out)): p.read_text() for p in out.rglob("*") if p.is_file()}
    assert files == {"metrics.csv": "new", "summary.txt": "summary", "figures/overlay_new.png": "new overlay",
                     "figures/keep.png": "another writer's"}
    monkeypatch.undo()

    with pytest.raises(RuntimeError), staged_files(out, last="metrics.csv", replaces=("figures/overlay_*.png",)) as stage:
        (stage / "metrics.csv").write_text("half")
        raise RuntimeError("the figures failed")
    assert {str(p.relative_to(out)): p.read_text() for p in out.rglob("*") if p.is_file()} == files
