"""Model folders: ``config.json`` + ``weights.safetensors`` (+ ``training_state.pt`` for resume).

A checkpoint is data, never code: weights are safetensors, the optimiser state is loaded with
``torch.load(..., weights_only=True)``. Every file is written atomically, so an interrupted save
leaves the previous checkpoint intact.

Layout of one model folder (e.g. ``runs/demo/models/inpainter/``)::

    config.json             what builds the network (architecture arguments, preset, versions)
    weights.safetensors     the network's state dict (the "last" weights)
    best.safetensors        optional: the best weights by validation metric
    training_state.pt       optimiser, scheduler, step and epoch, log rows, for --resume
    checksums.json          SHA-256 of every weights and state file, checked when they are loaded
    log.csv, curves.png     the training log and its plot (:class:`diff4mmlits.training.TrainingLog`)

A checkpoint's files (config, weights, training state) are one unit, written with a small journal:
each file goes to ``.pending.<name>`` first; when all are complete and flushed, the list of them
with their checksums goes to ``.group-commit.json`` (the commit point); then each is renamed into
place and ``checksums.json`` updated. A kill before the commit point leaves the previous checkpoint
whole (the pending files are discarded the next time the folder is opened); a kill after it is
finished the next time. Weights that do not match their checksum, or hold NaN or Inf, are refused
with one line naming the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from diff4mmlits.errors import InputError, StorageError
from diff4mmlits.files import free_space_note, fsync_file, json_text, read_json_or_none, write_json_atomic

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.safetensors"
STATE_NAME = "training_state.pt"
CHECKSUMS_NAME = "checksums.json"
COMMIT_NAME = ".group-commit.json"
PENDING_PREFIX = ".pending."


# --- files written as one unit -------------------------------------------------------------------
def write_file_group(folder: str | Path, writers: Mapping[str, Callable[[Path], None]]) -> Path:
    """Write ``name → writer(path)`` into ``folder`` as one unit (see the module doc); returns ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    recover_file_group(folder)
    digests: dict[str, str] = {}
    try:
        for name, write in writers.items():
            pending = folder / f"{PENDING_PREFIX}{name}"
            try:
                write(pending)
            except (RuntimeError, ValueError, SafetensorError) as err:  # torch and safetensors report a failed write so
                line = str(err).splitlines()[0] if str(err) else type(err).__name__
                raise StorageError(f"could not be written ({line}){free_space_note(folder)}; free some space and "
                                   "rerun", folder / name) from None
            fsync_file(pending)
            digests[name] = file_sha256(pending, length=64)
    except BaseException:
        for name in writers:
            (folder / f"{PENDING_PREFIX}{name}").unlink(missing_ok=True)
        raise
    write_json_atomic(folder / COMMIT_NAME, digests)  # the commit point
    recover_file_group(folder)
    return folder


def recover_file_group(folder: str | Path) -> None:
    """Finish a committed group write, or discard an uncommitted one (nothing to do: nothing written)."""
    folder = Path(folder)
    commit = folder / COMMIT_NAME
    pending = sorted(folder.glob(f"{PENDING_PREFIX}*")) if folder.is_dir() else []
    if not commit.exists() and not pending:
        return
    digests = read_json_or_none(commit)
    if isinstance(digests, dict):
        for name in digests:
            source = folder / f"{PENDING_PREFIX}{name}"
            if source.exists():
                os.replace(source, folder / name)
        checksums = read_json_or_none(folder / CHECKSUMS_NAME) or {}
        checksums.update({name: digest for name, digest in digests.items() if name != CONFIG_NAME})
        write_json_atomic(folder / CHECKSUMS_NAME, checksums)
        log.debug("%s: finished an interrupted checkpoint write", folder)
    for leftover in folder.glob(f"{PENDING_PREFIX}*"):
        leftover.unlink(missing_ok=True)
        log.info("%s: discarded %s, left by an interrupted checkpoint write (the previous checkpoint is whole)",
                 folder, leftover.name)
    commit.unlink(missing_ok=True)


def verify_checksum(path: str | Path) -> None:
    """Refuse a weights or state file whose SHA-256 differs from the one its folder's ``checksums.json``
    recorded at training, or whose ``checksums.json`` is damaged (a folder without one, from an older
    version, is read as is, with a warning)."""
    path = Path(path)
    listing = path.parent / CHECKSUMS_NAME
    if not listing.is_file():
        log.warning("%s: no %s (a model folder of an older version, or the file was removed): %s is not verified",
                    path.parent, CHECKSUMS_NAME, path.name)
        return
    checksums = read_json_or_none(listing)
    if not isinstance(checksums, dict):
        raise InputError("is damaged, so the weights cannot be verified; restore the model folder or re-train", listing)
    expected = checksums.get(path.name)
    if expected is None:
        raise InputError(f"is not listed in {CHECKSUMS_NAME}: it was not written by this model's training; "
                         "remove it or re-train", path)
    if file_sha256(path, length=len(expected)) != expected:
        raise InputError(f"does not match its checksum in {CHECKSUMS_NAME}: the file changed after training "
                         "(damaged or replaced); restore it or re-train", path)


def _weights_writer(module: torch.nn.Module) -> Callable[[Path], None]:
    unique, _ = _unique_state(module)
    state = {k: v.detach().contiguous().cpu() for k, v in unique.items()}
    return lambda path: save_file(state, str(path))


def _json_writer(obj: Any) -> Callable[[Path], None]:
    text = json_text(obj)
    return lambda path: path.write_text(text, encoding="utf-8")


def _unique_state(module: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The state dict without aliases, and ``alias → kept name`` for entries that share a tensor.

    Some networks register one submodule under two names (MONAI's DynUNet keeps its blocks in
    ``skip_layers`` and in ``downsamples``/``upsamples``); safetensors refuses shared tensors, so
    each tensor is stored once under its first name and the aliases are filled in on loading.
    """
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, int, tuple[int, ...], tuple[int, ...]], str] = {}
    for name, tensor in module.state_dict().items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()))
        if tensor.numel() > 0 and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        unique[name] = tensor
    return unique, aliases


def save_weights(module: torch.nn.Module, path: str | Path) -> Path:
    """Save a module's state dict as safetensors (shared tensors stored once), with its checksum."""
    path = Path(path)
    write_file_group(path.parent, {path.name: _weights_writer(module)})
    return path


def non_finite_tensors(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors of ``state`` that hold NaN or Inf (a diverged training)."""
    return [name for name, tensor in state.items() if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]


def load_weights(module: torch.nn.Module, path: str | Path, strict: bool = True) -> torch.nn.Module:
    """Load safetensors weights into ``module`` (on the module's device)."""
    path = Path(path)
    recover_file_group(path.parent)
    if not path.is_file():
        raise InputError("weights file not found; train the model first or check --model", path)
    verify_checksum(path)
    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types
        raise InputError(f"not a readable safetensors file ({type(err).__name__}); is it truncated?", path) from None
    broken = non_finite_tensors(state)
    if broken:
        raise InputError(f"{len(broken)} weight tensor(s) hold NaN or Inf (first: {broken[0]}); the training "
                         "diverged or the file is damaged: re-train", path)
    _, aliases = _unique_state(module)
    for alias, kept in aliases.items():
        if alias not in state and kept in state:
            state[alias] = state[kept]
    try:
        module.load_state_dict(state, strict=strict)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise InputError(f"weights do not fit this network ({first}); was it trained with other settings?", path) from None
    return module


def save_model_folder(folder: str | Path, module: torch.nn.Module, config: dict[str, Any], weights_name: str = WEIGHTS_NAME) -> Path:
    """Write ``config.json`` and the weights of a model folder, as one unit."""
    return write_file_group(folder, {CONFIG_NAME: _json_writer(config), weights_name: _weights_writer(module)})


def save_checkpoint_files(folder: str | Path, module: torch.nn.Module, config: dict[str, Any], state: dict[str, Any],
                          others: Mapping[str, torch.nn.Module] | None = None) -> Path:
    """One checkpoint as one unit: ``config.json``, the weights, the weights of ``others`` (file name →
    network) and ``training_state.pt`` (``state``, tensors and plain types)."""
    writers: dict[str, Callable[[Path], None]] = {CONFIG_NAME: _json_writer(config), WEIGHTS_NAME: _weights_writer(module)}
    writers.update({name: _weights_writer(network) for name, network in (others or {}).items()})
    writers[STATE_NAME] = lambda path: torch.save(state, path)
    return write_file_group(folder, writers)


def read_model_config(folder: str | Path, kind: str | None = None) -> dict[str, Any]:
    """The ``config.json`` of a model folder; with ``kind``, only when the folder holds that kind of model.

    The kind is the ``kind`` entry (older inpainter folders call it ``model``; both are read).
    """
    recover_file_group(folder)
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise InputError(_not_a_model_folder(Path(folder), kind), Path(folder))
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise InputError("is not valid JSON; the model folder is damaged, re-train", path) from None
    if kind is not None and model_kind(config) != kind:
        raise InputError(f"not a {kind} model folder (its config.json says kind {model_kind(config)!r}); "
                         "give the folder that its training command wrote", Path(folder))
    return config


def _not_a_model_folder(folder: Path, kind: str | None) -> str:
    """Why ``folder`` holds no model, and where the model is when ``folder`` is the run above it."""
    if not folder.exists():
        return "not found, so not a model folder; give one (a run's models/<name>/)"
    if (folder / "models").is_dir():
        models = sorted(p for p in (folder / "models").iterdir() if (p / CONFIG_NAME).is_file())
        wanted = [p for p in models if kind is None or _kind_of(p) == kind]
        if wanted:
            return f"a run folder, not a model folder; give its model, e.g. {wanted[0]}"
        if models:
            return f"a run folder, not a model folder, and none of its models is a {kind} model; train one first"
    return f"no {CONFIG_NAME} here: not a model folder (train it first)"


def _kind_of(folder: Path) -> str | None:
    """The kind a model folder's ``config.json`` names (None when it cannot be read)."""
    try:
        return model_kind(json.loads((folder / CONFIG_NAME).read_text()))
    except (OSError, ValueError, AttributeError):
        return None


@contextlib.contextmanager
def model_config_errors(folder: str | Path) -> Iterator[None]:
    """Turn a missing or ill-typed entry met while building a model from its ``config.json`` into one
    line naming the file and the entry (a damaged folder, or one of another tool or version)."""
    path = Path(folder) / CONFIG_NAME
    try:
        yield
    except KeyError as err:
        raise InputError(f"has no {err.args[0]!r} entry: the model folder is damaged or was written by another "
                         "tool; re-train it", path) from None
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InputError(f"entry {where}: {first['msg']}; fix it or re-train", path) from None
    except (TypeError, ValueError, AttributeError) as err:
        line = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"an entry has the wrong type or value ({line}); the model folder is damaged: re-train it",
                         path) from None


def model_kind(config: dict[str, Any]) -> str | None:
    """The kind of model a ``config.json`` describes (key ``kind``, or the older ``model``)."""
    return config.get("kind", config.get("model"))


def save_training_state(folder: str | Path, state: dict[str, Any]) -> Path:
    """Save optimiser/scheduler state dicts and counters for resume (tensors and plain types only)."""
    write_file_group(folder, {STATE_NAME: lambda path: torch.save(state, path)})
    return Path(folder) / STATE_NAME


def load_training_state(folder: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The saved training state, or ``None`` when there is none. Loaded with ``weights_only=True``."""
    recover_file_group(folder)
    path = Path(folder) / STATE_NAME
    if not path.is_file():
        return None
    verify_checksum(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # unpickling refuses anything that is not plain data
        raise InputError(f"training state cannot be loaded safely ({type(err).__name__}); delete it to restart", path) from None


def file_sha256(path: str | Path, length: int = 16) -> str:
    """The first ``length`` hex digits of a file's SHA-256 (for provenance and manifests)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]
