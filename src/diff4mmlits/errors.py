"""The exception types a user sees as one line.

An :class:`InputError` is something the user can fix; its message is one line: which file, what
is wrong, what to do. The CLI prints it as ``error: <message>`` and exits with status 2. A
:class:`StorageError` (a full disk, a read-only or forbidden folder: the environment, not the
input) is printed the same way with exit status 3. Any other exception is a bug: the CLI prints one
line naming the log file that holds the traceback.
"""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad user input: a file, a folder, a setting. The message is the whole story, in one line."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        message = " ".join(str(message).split())  # one line, always
        self.message = message
        """What is wrong and what to do, without the path."""
        self.path = Path(path) if path is not None else None
        super().__init__(f"{path}: {message}" if path is not None else message)


class StorageError(InputError):
    """A file could not be written or read back whole: disk full, read-only folder, no permission."""


class TrainingDiverged(InputError):
    """A training's weights hold NaN or Inf: it diverged (a learning rate too high for the data)."""
