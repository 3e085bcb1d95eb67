"""CUT: one generator, PatchNCE head, identity NCE, condition channels."""

from __future__ import annotations

import pytest
import torch

from diff4mmlits.errors import InputError
from diff4mmlits.translate.base import Batch
from diff4mmlits.translate.cut import CUT

from .helpers import losses_fall, smoke_config
from .test_cyclegan import fixed_batch


def test_cut_has_one_generator_a_discriminator_and_an_mlp_head(toy_ct, toy_mri) -> None:
    config = smoke_config(method="cut")
    model = CUT(config)
    assert set(model.nets) == {"G", "D", "F"}
    assert len(model.nets["F"].heads) == len(config.nce_layers)
    losses = model.train_step(fixed_batch(toy_ct, toy_mri), torch.Generator().manual_seed(0))
    assert set(losses) == {"gan", "nce", "generator", "discriminator"}


def test_a_few_steps_lower_the_nce_and_generator_losses(toy_ct, toy_mri) -> None:
    model = CUT(smoke_config(method="cut"))
    batch, generator = fixed_batch(toy_ct, toy_mri), torch.Generator().manual_seed(0)
    history = [model.train_step(batch, generator) for _ in range(12)]
    assert losses_fall(history, "nce")
    assert losses_fall(history, "generator")


def test_nce_layers_outside_the_encoder_are_refused() -> None:
    with pytest.raises(InputError, match="nce_layers"):
        CUT(smoke_config(method="cut", nce_layers=(0, 9)))


def test_condition_channels_are_read_and_passed_to_the_discriminator() -> None:
    """A painter: 2 image channels + 1 mask in, 2 image channels out; D sees image and mask."""
    model = CUT(smoke_config(method="cut"), in_channels=3, out_channels=2, condition_channels=1)
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    assert model.generator(a).shape == (2, 2, 32, 32)
    assert torch.equal(model.with_condition(model.generator(a), a)[:, 2], a[:, 2])
    seen = []
    hook = model.nets["D"].register_forward_hook(lambda module, args, out: seen.append(args[0].shape[1]))
    try:
        model.train_step(Batch(a, b), torch.Generator().manual_seed(0))
    finally:
        hook.remove()
    assert seen and set(seen) == {3}  # every call of D: the 2 phases and the mask
