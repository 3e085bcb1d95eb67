"""Weights of networks that register one submodule under two names save once and load back whole; a
failed write is one line."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from diff4mmlits import checkpoint
from diff4mmlits.checkpoint import load_weights, save_weights
from diff4mmlits.errors import InputError, StorageError


class Aliased(torch.nn.Module):
    """Like MONAI's DynUNet: the same block reachable as ``block`` and ``skip.block``."""

    def __init__(self) -> None:
        super().__init__()
        self.block = torch.nn.Linear(3, 3)
        self.skip = torch.nn.Module()
        self.skip.block = self.block
        self.head = torch.nn.Linear(3, 1)


def test_aliased_weights_round_trip(tmp_path) -> None:
    source = Aliased()
    save_weights(source, tmp_path / "w.safetensors")
    stored = load_file(str(tmp_path / "w.safetensors"))
    assert set(stored) == {"block.weight", "block.bias", "head.weight", "head.bias"}  # each tensor once
    target = load_weights(Aliased(), tmp_path / "w.safetensors")
    for (name, a), (_, b) in zip(source.state_dict().items(), target.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)
    assert target.skip.block is target.block


def test_a_weights_write_that_fails_on_a_full_disk_is_one_line_naming_the_file(tmp_path, monkeypatch) -> None:
    """safetensors reports ENOSPC as its own SafetensorError (not an OSError): it reached the user as a traceback."""
    def full_disk(state, path):
        open(path, "wb").close()
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    with pytest.raises(StorageError, match="No space left on device.*free some space") as err:
        save_weights(torch.nn.Linear(2, 2), tmp_path / "m" / "w.safetensors")
    assert str(tmp_path / "m" / "w.safetensors") in str(err.value) and "\n" not in str(err.value)
    assert [p.name for p in (tmp_path / "m").iterdir()] == []  # nothing half-written is left


def test_a_run_folder_or_a_missing_folder_given_as_a_model_says_where_the_model_is(tmp_path) -> None:
    """``--model RUN`` said 'no config.json here: not a model folder (train it first)' of a trained
    run; a path that does not exist said the same."""
    from diff4mmlits.checkpoint import CONFIG_NAME, read_model_config

    run = tmp_path / "run"
    for name, kind in (("autoencoder", "vqvae"), ("inpainter", "ffc-inpainter"), ("segmenter", "segmenter")):
        (run / "models" / name).mkdir(parents=True)  # folder names are not kinds: found by config.json
        (run / "models" / name / CONFIG_NAME).write_text(json.dumps({"kind": kind}))
    with pytest.raises(InputError, match="a run folder, not a model folder; give its model, e.g. .*models/segmenter"):
        read_model_config(run, kind="segmenter")
    with pytest.raises(InputError, match="give its model, e.g. .*models/inpainter$"):
        read_model_config(run, kind="ffc-inpainter")
    with pytest.raises(InputError, match="none of its models is a latent-diffusion model"):
        read_model_config(run, kind="latent-diffusion")
    with pytest.raises(InputError, match="not found, so not a model folder"):
        read_model_config(tmp_path / "nowhere")
