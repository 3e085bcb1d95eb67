"""Atomic writes: write to a temporary name in the same folder, then ``os.replace``.

A reader never sees a half-written file, and an interrupted write leaves the old file intact. The
temporary file is flushed to disk (``fsync``) before the rename, so a full disk shows up as an
error there and not as a truncated file later; :func:`describe_os_error` turns such an error into
the one line the user reads.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from diff4mmlits.errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, else delete it.

    The temporary name keeps the final suffixes (``x.nii.gz`` → ``.x.<rand>.tmp.nii.gz``) so that
    writers which pick a format from the extension (SimpleITK, matplotlib) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    except OSError as err:  # the message names the file asked for, not a hidden temporary one
        raise OSError(err.errno, err.strerror or str(err), str(path)) from err
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _default_file_mode())  # mkstemp makes 0600; outputs follow the umask like any file
        fsync_file(tmp)
        os.replace(tmp, path)
    except OSError as err:
        if err.filename is None or Path(err.filename) == tmp:  # a writer given an open file names none (zipfile)
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def staged_files(out_dir: str | Path, last: str | None = None, replaces: tuple[str, ...] = ()) -> Iterator[Path]:
    """A set of files that lands in ``out_dir`` whole or not at all.

    Yields a new staging folder inside ``out_dir`` (``.staged.<rand>.tmp``); the caller writes the
    whole set there. On success each file moves to the same relative path under ``out_dir``
    (``os.replace``: renames need no new space, so a full disk fails while writing, before any
    file of ``out_dir`` is touched), ``last`` (a relative path, the file readers look for) after
    the others; files under ``out_dir`` matching a glob of ``replaces`` that the set does not hold
    (an earlier set's) are removed first. On an error the staging folder is deleted and ``out_dir``
    is as it was. For a folder shared with other writers (``RUN/report/``), where a whole-folder
    swap would remove their files.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staged.", suffix=".tmp", dir=out_dir))
    try:
        yield stage
        written = sorted(p.relative_to(stage) for p in stage.rglob("*") if p.is_file())
        for pattern in replaces:
            for old in out_dir.glob(pattern):
                if old.is_file() and old.relative_to(out_dir) not in written:
                    old.unlink()
        for relative in sorted(written, key=lambda p: str(p) == last):
            (out_dir / relative).parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / relative, out_dir / relative)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def remove_interrupted_writes(root: str | Path) -> int:
    """Delete the temporary files :func:`atomic_path` left under ``root`` when a process was killed
    mid-write (``.<name>.<random>.tmp<suffix>``), and half-written case folders (``.<case>.tmp/``);
    only call it while no other process writes there.
    Returns how many were removed."""
    removed = 0
    for path in sorted(Path(root).rglob(".*.tmp*"), key=lambda p: len(p.parts)):
        if path.is_dir() and path.name.endswith(".tmp"):  # a case folder being written (RunFolder.write_case)
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
        elif path.is_file() and ".tmp" in path.name.split(".", 2)[-1]:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def fsync_file(path: str | Path) -> None:
    """Flush a written file to the disk (errors of delayed allocation, e.g. ENOSPC, surface here)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO})
"""OS errors that come from the environment (the disk, the file system, permissions), not from a bug."""


PATH_ERRNOS = frozenset({errno.ENOTDIR, errno.EEXIST, errno.EISDIR})
"""OS errors from a path the user gave: a file where a folder must be, or a folder where a file must be."""


def describe_path_error(err: OSError) -> str:
    """One line for a path that cannot be used as given (:data:`PATH_ERRNOS`)."""
    where = err.filename or "a path"
    if err.errno == errno.EISDIR:
        return f"{where}: is a folder where a file is needed; choose another path"
    return (f"{where}: a file stands where a folder is needed (the path or one of its parents is a file); "
            "choose another path")


def refuse_output_in_input(input_path: str | Path, output: str | Path, what: str,
                           names: tuple[str, str] = ("OUTPUT", "INPUT")) -> None:
    """Stop (``InputError``) when ``output`` is ``input_path`` or lies inside the input folder: writing
    there would overwrite the input's own files (a case's ``label.nii.gz``) or add files that the
    input's reader then takes for images. ``what``: the outputs, e.g. "the labels"; ``names``: the
    command's names for the two arguments."""
    source, target = Path(input_path).resolve(), Path(output).resolve()
    out, given = names
    if target == source or (source.is_dir() and source in target.parents):
        raise InputError(f"{out} is {f'the {given}' if target == source else f'inside the {given}'}: {what} would "
                         "overwrite or mix with the input's files; choose a place outside it", Path(output))


def missing_folders(folder: str | Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, innermost first: what making it makes."""
    folder = Path(folder).absolute()
    return [f for f in (folder, *folder.parents) if not f.exists()]


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove each of ``folders`` (innermost first) that is an empty folder: a refused command leaves
    none of the folders it made behind."""
    for folder in folders:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


@contextlib.contextmanager
def named_as_final(staging: str | Path, final: str | Path) -> Iterator[None]:
    """Errors raised while a folder is written in ``staging`` (to be renamed to ``final`` when whole)
    name the file as it would have been in ``final``: the staging folder is gone by the time the user
    reads the message (a full disk while writing a phantom or an nnU-Net dataset)."""
    staging, final = str(staging), str(final)
    try:
        yield
    except InputError as err:
        if err.path is None or not str(err.path).startswith(staging):
            raise
        raise type(err)(err.message, final + str(err.path)[len(staging):]) from None
    except OSError as err:
        if not err.filename or not str(err.filename).startswith(staging):
            raise
        raise OSError(err.errno, err.strerror or str(err), final + str(err.filename)[len(staging):]) from None


def require_writable(folder: str | Path) -> None:
    """Raise the ``OSError`` a write into ``folder`` would meet (read-only file system, no permission),
    checked on ``folder`` or, where it does not exist yet, the nearest parent it will be made in, and
    without writing anything: so that a long computation does not end in a failed save."""
    folder = Path(folder).absolute()
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        return  # a file in the way: the write itself says so (describe_path_error)
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(folder))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(folder))


def free_space_mb(path: str | Path) -> float | None:
    """Free space (MB) of the file system holding ``path`` (or its nearest existing parent)."""
    path = Path(path).absolute()
    for folder in (path, *path.parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free / 2**20
            except OSError:
                return None
    return None


def free_space_note(path: str | Path) -> str:
    """``", N MB free on its disk"`` for messages about a write that failed (empty when unknown)."""
    free = free_space_mb(path)
    return f", {free:.0f} MB free on its disk" if free is not None else ""


def describe_os_error(err: OSError) -> str:
    """One line for an environment error: which file, what is wrong, what to do."""
    where = err.filename or "a file"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        free = free_space_mb(err.filename) if err.filename else None
        left = f" ({free:.0f} MB free)" if free is not None else ""
        what = "the disk is full" if err.errno == errno.ENOSPC else "the disk quota is used up"
        return (f"cannot write {where}: {what}{left}; free some space and rerun (files written so far are "
                "complete, unfinished ones were not kept)")
    if err.errno == errno.EROFS:
        return f"cannot write {where}: the file system is read-only; choose a folder on a writable disk"
    if err.errno in (errno.EACCES, errno.EPERM):
        return f"cannot access {where}: permission denied; choose a folder you may write to, or fix its permissions"
    return f"cannot access {where}: {err.strerror or err}; check the disk and rerun"


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def json_text(obj: Any) -> str:
    """``obj`` as indented JSON text (numpy scalars and arrays, paths, sets and tuples allowed)."""
    return json.dumps(obj, indent=2, default=_json_default) + "\n"


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (see :func:`json_text`), atomically."""
    return write_text_atomic(path, json_text(obj))


def read_json_or_none(path: str | Path) -> Any | None:
    """The JSON in ``path``, or None when the file is missing or not valid JSON (a record that is
    merely absent or half-written, like a stage stamp, a QC file or a metrics file)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")
