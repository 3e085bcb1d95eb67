"""CycleGAN (Zhu et al. 2017): two generators, two PatchGAN discriminators, cycle and identity losses.

Domain A is the source (e.g. CT), domain B the target (e.g. MRI). ``G_AB`` translates A → B and is
what ``translate`` uses; ``D_B`` tells real B from translated A. Losses (least-squares GAN)::

    L_G = GAN(D_B(G_AB(a))) + GAN(D_A(G_BA(b)))
          + λ_cyc (|G_BA(G_AB(a)) - a|₁ + |G_AB(G_BA(b)) - b|₁)
          + λ_cyc λ_idt (|G_AB(b) - b|₁ + |G_BA(a) - a|₁)
    L_D = ½ [GAN(D(real), 1) + GAN(D(pool(fake)), 0)]     for D_A and D_B
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from diff4mmlits.distributed import DistributedContext
from diff4mmlits.translate.base import Batch, TranslationModel, set_requires_grad
from diff4mmlits.translate.config import TranslateConfig
from diff4mmlits.translate.networks import ImagePool, LSGANLoss, ResnetGenerator, build_discriminator


def build_generator(config: TranslateConfig, in_channels: int, out_channels: int) -> ResnetGenerator:
    """The ResNet generator of the configured size."""
    return ResnetGenerator(
        in_channels=in_channels, out_channels=out_channels, filters=config.generator_filters,
        n_blocks=config.generator_blocks, spatial_dims=config.spatial_dims,
    )


class CycleGAN(TranslationModel):
    """Unpaired A ↔ B translation with cycle consistency; see the module docstring for the losses."""

    method = "cyclegan"
    generator_key = "G_AB"

    def __init__(
        self, config: TranslateConfig, in_channels: int = 1, out_channels: int = 1,
        condition_channels: int = 0, context: DistributedContext | None = None,
    ) -> None:
        super().__init__(context)
        if condition_channels:
            raise ValueError("CycleGAN translates whole images; condition channels need CUT")
        self.config = config
        self.nets["G_AB"] = build_generator(config, in_channels, out_channels)
        self.nets["G_BA"] = build_generator(config, out_channels, in_channels)
        self.nets["D_A"] = build_discriminator(in_channels, config.discriminator_channels, config.discriminator_layers, config.spatial_dims)
        self.nets["D_B"] = build_discriminator(out_channels, config.discriminator_channels, config.discriminator_layers, config.spatial_dims)
        self.use_identity = config.lambda_identity > 0 and in_channels == out_channels
        self.gan = LSGANLoss()
        self.pools = {"fake_a": ImagePool(config.pool_size), "fake_b": ImagePool(config.pool_size)}
        self.add_optimizer("G", self.generator_modules(), config.learning_rate, config.betas)
        self.add_optimizer("D", [self.nets["D_A"], self.nets["D_B"]], config.learning_rate, config.betas)

    def generator_modules(self) -> list[torch.nn.Module]:
        """Everything the generator optimiser updates (EssNet adds its segmenter)."""
        return [self.nets["G_AB"], self.nets["G_BA"]]

    def extra_generator_losses(self, batch: Batch, fake_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weighted extra terms of the generator loss (none here; EssNet's segmentation loss)."""
        return {}

    def train_step(self, batch: Batch, generator: torch.Generator) -> dict[str, float]:
        config, nets = self.config, self.nets
        real_a, real_b = batch.real_a, batch.real_b
        fake_b = nets["G_AB"](real_a)
        rec_a = nets["G_BA"](fake_b)
        fake_a = nets["G_BA"](real_b)
        rec_b = nets["G_AB"](fake_a)

        # generators (and EssNet's segmenter), discriminators frozen
        set_requires_grad([nets["D_A"], nets["D_B"]], False)
        losses: dict[str, torch.Tensor] = {
            "gan": self.gan(nets["D_B"](fake_b), True) + self.gan(nets["D_A"](fake_a), True),
            "cycle": config.lambda_cycle * (F.l1_loss(rec_a, real_a) + F.l1_loss(rec_b, real_b)),
        }
        if self.use_identity:
            weight = config.lambda_cycle * config.lambda_identity
            losses["identity"] = weight * (F.l1_loss(nets["G_AB"](real_b), real_b) + F.l1_loss(nets["G_BA"](real_a), real_a))
        losses.update(self.extra_generator_losses(batch, fake_b))
        total = sum(losses.values())
        self.update("G", total, self.generator_modules())

        # discriminators, on a history of generated images
        set_requires_grad([nets["D_A"], nets["D_B"]], True)
        pooled_b = self.pools["fake_b"].query(fake_b, generator)
        pooled_a = self.pools["fake_a"].query(fake_a, generator)
        loss_d_b = 0.5 * (self.gan(nets["D_B"](real_b), True) + self.gan(nets["D_B"](pooled_b), False))
        loss_d_a = 0.5 * (self.gan(nets["D_A"](real_a), True) + self.gan(nets["D_A"](pooled_a), False))
        self.update("D", loss_d_a + loss_d_b, [nets["D_A"], nets["D_B"]])

        result = {name: float(value.detach()) for name, value in losses.items()}
        result["generator"] = float(total.detach())
        result["discriminator"] = float((loss_d_a + loss_d_b).detach())
        return result
