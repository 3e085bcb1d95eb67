"""Weights of networks that register one submodule under two names save once and load back whole."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from diff4mmlits.checkpoint import load_weights, save_weights


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
