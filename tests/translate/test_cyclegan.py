"""CycleGAN: networks, loss terms, a few steps lower the generator loss."""

from __future__ import annotations

import pytest
import torch

from diff4mmlits.data.case import Case
from diff4mmlits.translate.base import Batch
from diff4mmlits.translate.cyclegan import CycleGAN
from diff4mmlits.translate.stage import prepare_data

from .helpers import losses_fall, smoke_config


def fixed_batch(toy_ct: list[Case], toy_mri: list[Case], labels: bool = False) -> Batch:
    config = smoke_config()
    data = prepare_data(toy_ct, toy_mri, config, need_labels=labels)
    generator = torch.Generator().manual_seed(0)
    real_a, label_a = data.source.sample(2, 32, 2, generator)
    real_b, _ = data.target.sample(2, 32, 2, generator)
    return Batch(real_a, real_b, label_a)


def test_cyclegan_has_two_generators_two_discriminators_and_reports_each_term(toy_ct, toy_mri) -> None:
    model = CycleGAN(smoke_config(method="cyclegan"))
    assert set(model.nets) == {"G_AB", "G_BA", "D_A", "D_B"}
    losses = model.train_step(fixed_batch(toy_ct, toy_mri), torch.Generator().manual_seed(0))
    assert set(losses) == {"gan", "cycle", "identity", "generator", "discriminator"}
    assert losses["generator"] == pytest.approx(sum(losses[k] for k in ("gan", "cycle", "identity")), rel=1e-5)
    batch = fixed_batch(toy_ct, toy_mri)
    assert model.generator(batch.real_a).shape == batch.real_b.shape


def test_a_few_steps_lower_the_cycle_and_generator_losses(toy_ct, toy_mri) -> None:
    model = CycleGAN(smoke_config(method="cyclegan"))
    batch, generator = fixed_batch(toy_ct, toy_mri), torch.Generator().manual_seed(0)
    history = [model.train_step(batch, generator) for _ in range(12)]
    assert losses_fall(history, "cycle")
    assert losses_fall(history, "generator")


def test_identity_term_is_off_when_weighted_zero(toy_ct, toy_mri) -> None:
    model = CycleGAN(smoke_config(method="cyclegan", lambda_identity=0.0))
    assert "identity" not in model.train_step(fixed_batch(toy_ct, toy_mri), torch.Generator().manual_seed(0))
