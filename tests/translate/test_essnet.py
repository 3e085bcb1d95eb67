"""EssNet: the segmentation constraint trains with the generators and moves G_AB."""

from __future__ import annotations

import torch

from diff4mmlits.translate.essnet import EssNet

from .helpers import losses_fall, smoke_config
from .test_cyclegan import fixed_batch


def test_essnet_adds_a_segmenter_in_the_generator_optimiser(toy_ct, toy_mri) -> None:
    model = EssNet(smoke_config(method="essnet"))
    assert "S" in model.nets
    generator_params = {id(p) for group in model.optimizers["G"].param_groups for p in group["params"]}
    assert all(id(p) in generator_params for p in model.nets["S"].parameters())
    assert all(id(p) in generator_params for p in model.nets["G_AB"].parameters())
    losses = model.train_step(fixed_batch(toy_ct, toy_mri, labels=True), torch.Generator().manual_seed(0))
    assert "segmentation" in losses and losses["segmentation"] > 0


def test_segmentation_loss_reaches_the_generator(toy_ct, toy_mri) -> None:
    """The constraint is on G_AB's output: its gradient flows into G_AB (one optimisation)."""
    model = EssNet(smoke_config(method="essnet"))
    batch = fixed_batch(toy_ct, toy_mri, labels=True)
    loss = model.extra_generator_losses(batch, model.nets["G_AB"](batch.real_a))["segmentation"]
    loss.backward()
    grads = [p.grad for p in model.nets["G_AB"].parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


def test_a_few_steps_lower_the_segmentation_and_generator_losses(toy_ct, toy_mri) -> None:
    model = EssNet(smoke_config(method="essnet", learning_rate=1e-3))
    batch, generator = fixed_batch(toy_ct, toy_mri, labels=True), torch.Generator().manual_seed(0)
    history = [model.train_step(batch, generator) for _ in range(12)]
    assert losses_fall(history, "segmentation")
    assert losses_fall(history, "generator")
