"""Model folders: ``config.json`` + ``weights.safetensors`` (+ ``training_state.pt`` for resume).

A checkpoint is data, never code: weights are safetensors, the optimiser state is loaded with
``torch.load(..., weights_only=True)``. Every file is written atomically, so an interrupted save
leaves the previous checkpoint intact.

Layout of one model folder (e.g. ``runs/demo/models/inpainter/``)::

    config.json             what builds the network (architecture arguments, preset, versions)
    weights.safetensors     the network's state dict (the "last" weights)
    best.safetensors        optional: the best weights by validation metric
    training_state.pt       optimiser, scheduler, step and epoch, log rows, for --resume
    log.csv, curves.png     the training log and its plot (:class:`diff4mmlits.training.TrainingLog`)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from diff4mmlits.errors import InputError
from diff4mmlits.files import atomic_path, write_json_atomic

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.safetensors"
STATE_NAME = "training_state.pt"


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
    """Save a module's state dict as safetensors, atomically (shared tensors stored once)."""
    unique, _ = _unique_state(module)
    state = {k: v.detach().contiguous().cpu() for k, v in unique.items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    return Path(path)


def load_weights(module: torch.nn.Module, path: str | Path, strict: bool = True) -> torch.nn.Module:
    """Load safetensors weights into ``module`` (on the module's device)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("weights file not found; train the model first or check --model", path)
    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types
        raise InputError(f"not a readable safetensors file ({type(err).__name__}); is it truncated?", path) from None
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
    """Write ``config.json`` and the weights of a model folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / CONFIG_NAME, config)
    save_weights(module, folder / weights_name)
    return folder


def read_model_config(folder: str | Path, kind: str | None = None) -> dict[str, Any]:
    """The ``config.json`` of a model folder; with ``kind``, only when the folder holds that kind of model.

    The kind is the ``kind`` entry (older inpainter folders call it ``model``; both are read).
    """
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise InputError(f"no {CONFIG_NAME} here: not a model folder (train it first)", Path(folder))
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise InputError("is not valid JSON; the model folder is damaged, re-train", path) from None
    if kind is not None and model_kind(config) != kind:
        raise InputError(f"not a {kind} model folder (its config.json says kind {model_kind(config)!r}); "
                         "give the folder that its training command wrote", Path(folder))
    return config


def model_kind(config: dict[str, Any]) -> str | None:
    """The kind of model a ``config.json`` describes (key ``kind``, or the older ``model``)."""
    return config.get("kind", config.get("model"))


def save_training_state(folder: str | Path, state: dict[str, Any]) -> Path:
    """Save optimiser/scheduler state dicts and counters for resume (tensors and plain types only)."""
    path = Path(folder) / STATE_NAME
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_training_state(folder: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The saved training state, or ``None`` when there is none. Loaded with ``weights_only=True``."""
    path = Path(folder) / STATE_NAME
    if not path.is_file():
        return None
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
