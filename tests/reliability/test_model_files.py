"""Damaged or tampered model folders are refused with one line naming the file: weights that do not
match their checksum, NaN weights, NaN outputs, a config.json with a missing or ill-typed entry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diff4mmlits.checkpoint import CHECKSUMS_NAME, CONFIG_NAME, WEIGHTS_NAME, load_weights, save_weights
from diff4mmlits.cli import main
from diff4mmlits.errors import InputError
from diff4mmlits.segment.predict import load_segmenter, predict_probabilities


def best_weights(model: Path) -> Path:
    return next(p for p in (model / "best.safetensors", model / WEIGHTS_NAME) if p.is_file())


def test_flipped_bytes_in_the_weights_are_refused_with_one_line(trained_model: Path, new_case_folder: Path,
                                                                tmp_path: Path, capsys) -> None:
    path = best_weights(trained_model)
    data = bytearray(path.read_bytes())
    data[-100:-90] = bytes(255 - b for b in data[-100:-90])  # inside the tensor data: safetensors still loads it
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=f"{path.name}: does not match its checksum in {CHECKSUMS_NAME}"):
        load_segmenter(trained_model, device="cpu")
    assert main(["predict", str(new_case_folder), str(tmp_path / "out"), "--model", str(trained_model)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not match its checksum" in err[0] and str(path) in err[0]


def test_nan_weights_are_refused(tmp_path: Path) -> None:
    net = torch.nn.Linear(3, 2)
    with torch.no_grad():
        net.weight.fill_(float("nan"))
    save_weights(net, tmp_path / WEIGHTS_NAME)  # checksummed: the file is as training left it
    with pytest.raises(InputError, match="hold NaN or Inf .first: weight.; the training diverged"):
        load_weights(torch.nn.Linear(3, 2), tmp_path / WEIGHTS_NAME)


def test_an_older_folder_without_checksums_still_loads(trained_model: Path) -> None:
    (trained_model / CHECKSUMS_NAME).unlink()
    saved = load_file(str(best_weights(trained_model)))
    loaded = load_segmenter(trained_model, device="cpu").network.state_dict()
    assert saved
    for key, value in saved.items():  # the weights themselves, not a fresh network
        assert torch.equal(loaded[key].cpu(), value), key


def test_nan_outputs_are_an_error_not_an_empty_label(trained_model: Path) -> None:
    segmenter = load_segmenter(trained_model, device="cpu")
    image = torch.zeros((4, *segmenter.plan.patch_size_vox)).numpy()
    with torch.no_grad():
        next(segmenter.network.parameters()).fill_(float("nan"))  # in memory: as a damaged input would do
    with pytest.raises(InputError, match="output holds NaN or Inf"):
        predict_probabilities(segmenter, image)


@pytest.mark.parametrize(("damage", "message"), [
    (lambda c: c.pop("segment"), "config.json: has no 'segment' entry"),
    (lambda c: c["segment"].update(base_filters="many"), "config.json: entry base_filters: Input should be a valid integer"),
])
def test_a_malformed_model_config_is_one_line_naming_file_and_entry(damage, message: str, trained_model: Path,
                                                                    new_case_folder: Path, tmp_path: Path, capsys) -> None:
    path = trained_model / CONFIG_NAME
    config = json.loads(path.read_text())
    damage(config)
    path.write_text(json.dumps(config))
    assert main(["predict", str(new_case_folder), str(tmp_path / "out"), "--model", str(trained_model)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "internal error" not in err[0]
