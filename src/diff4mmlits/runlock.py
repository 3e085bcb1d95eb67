"""One writer per run folder: a lock file holding the PID, host and command of the process that writes.

Every command that writes a run folder holds ``RUN/.lock`` while it runs (taken with ``O_EXCL``, so
two processes cannot both take it). A second command on the same folder stops at once with one
line naming the holder. A lock left by a process that no longer runs on this host (``kill -9``, a
power cut) is taken over, with a log line saying so; a lock held from another host is never taken
over (its PID cannot be checked from here): the message says which file to delete once that host's
process is known to be gone. Within one process the lock is re-entrant (``run`` holds it while each
stage takes it again), and under ``torchrun`` only rank 0 takes it (the other ranks are the same
command). Whoever takes the lock removes the temporary files a killed writer left behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from diff4mmlits.distributed import is_main_process
from diff4mmlits.errors import InputError
from diff4mmlits.files import missing_folders, remove_empty_folders, remove_interrupted_writes

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
_HELD: dict[Path, int] = {}
"""Locks this process holds → how many nested ``run_folder_lock`` hold each."""


class RunFolderBusy(InputError):
    """Another process is writing the run folder."""


def _describe(holder: dict) -> str:
    return (f"'{holder.get('command', '?')}' (PID {holder.get('pid', '?')} on {holder.get('host', '?')}, "
            f"since {holder.get('started', '?')})")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def _read_holder(path: Path) -> dict | None:
    """The lock's holder, ``{}`` when the file is unreadable (being written), None when it is gone."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def _try_create(path: Path, record: dict) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(record))
    return True


def acquire(root: Path, command: str) -> Path:
    """Take ``root/.lock`` for ``command`` (see the module doc); raises :class:`RunFolderBusy`."""
    path = root / LOCK_FILE
    record = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
              "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(3):
        if _try_create(path, record):
            return path
        holder = _read_holder(path)
        if holder is None:  # released between our two looks
            continue
        if not holder:  # being written this instant, or damaged: give its writer a moment
            time.sleep(0.2)
            holder = _read_holder(path)
            if holder is None:
                continue
            if not holder:
                raise RunFolderBusy(f"the run folder's lock file {path} is unreadable; if no other diff4mmlits "
                                    "command uses this folder, delete it and rerun", root)
        pid = holder.get("pid")
        if holder.get("host") == record["host"] and isinstance(pid, int) and not _process_alive(pid):
            log.warning("%s: took over the lock of %s, which is no longer running", root, _describe(holder))
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        raise RunFolderBusy(f"in use by {_describe(holder)}; wait for it to finish, or delete {path} if that "
                            "process is gone", root)
    raise RunFolderBusy(f"could not take the lock {path}: other processes keep taking it; rerun", root)


def release(path: Path) -> None:
    """Remove the lock file if this process still holds it."""
    holder = _read_holder(path)
    if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def run_folder_lock(root: str | Path, command: str | None = None) -> Iterator[None]:
    """Hold the run folder's lock while the block runs (re-entrant). A folder it created is removed
    again when the block wrote nothing into it (a command that stopped on bad input)."""
    root = Path(root)
    if not is_main_process():
        yield
        return
    made = missing_folders(root)
    root.mkdir(parents=True, exist_ok=True)
    key = (root / LOCK_FILE).resolve()
    if _HELD.get(key):
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    path = acquire(root, command or " ".join(["diff4mmlits", *sys.argv[1:]]))
    _HELD[key] = 1
    removed = remove_interrupted_writes(root)  # ours alone now: a temporary file is a killed write's
    if removed:
        log.info("%s: removed %d temporary file(s) left by an interrupted write", root, removed)
    try:
        yield
    finally:
        _HELD.pop(key, None)
        release(path)
        remove_empty_folders(made)  # a command refused before writing: no empty run folder (or parents) left
