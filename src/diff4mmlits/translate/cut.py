"""CUT: contrastive unpaired translation (Park et al. 2020), one generator, no inverse network.

``G`` maps A → B; a PatchGAN ``D`` tells real B from ``G(a)``; PatchNCE on several encoder layers
of ``G`` ties each output patch to the input patch at the same place (``patchnce``); the identity
NCE term asks the same of ``G(b)`` against ``b``. The Diff4MMLiTS paper uses CUT as its Table V
baseline synthesizer (:mod:`diff4mmlits.synthesize.cut_painter`)::

    L_G = λ_GAN · GAN(D(G(a))) + λ_NCE · ½ [NCE(a, G(a)) + NCE(b, G(b))]
    L_D = ½ [GAN(D(b), 1) + GAN(D(G(a)), 0)]

Condition channels (``condition_channels`` > 0, the tumor painter): the last channels of a sample
are a condition (a tumor mask) that ``G`` reads and does not produce; the output is put back
beside the condition before ``D`` and the encoder see it, so ``D`` judges image and mask together.
"""

from __future__ import annotations

import torch

from diff4mmlits.distributed import DistributedContext
from diff4mmlits.errors import InputError
from diff4mmlits.translate.base import Batch, TranslationModel, set_requires_grad
from diff4mmlits.translate.config import TranslateConfig
from diff4mmlits.translate.cyclegan import build_generator
from diff4mmlits.translate.networks import LSGANLoss, build_discriminator
from diff4mmlits.translate.patchnce import PatchSampleMLP, patch_nce_loss


class CUT(TranslationModel):
    """Contrastive unpaired translation; see the module docstring for the losses."""

    method = "cut"
    generator_key = "G"

    def __init__(
        self, config: TranslateConfig, in_channels: int = 1, out_channels: int = 1,
        condition_channels: int = 0, context: DistributedContext | None = None,
    ) -> None:
        super().__init__(context)
        self.config = config
        self.condition_channels = condition_channels
        if condition_channels and out_channels + condition_channels != in_channels:
            raise ValueError("with condition channels, input channels = output channels + condition channels")
        generator = build_generator(config, in_channels, out_channels)
        taps = len(generator.tap_channels)
        if any(layer < 0 or layer >= taps for layer in config.nce_layers):
            raise InputError(
                f"translate.nce_layers {list(config.nce_layers)}: this generator has encoder taps 0..{taps - 1} "
                f"({config.generator_blocks} residual blocks); choose layers in that range"
            )
        self.nets["G"] = generator
        self.nets["D"] = build_discriminator(out_channels + condition_channels, config.discriminator_channels,
                                             config.discriminator_layers, config.spatial_dims)
        self.nets["F"] = PatchSampleMLP([generator.tap_channels[t] for t in config.nce_layers], config.nce_features)
        self.use_identity = config.nce_identity and in_channels == out_channels + condition_channels
        self.gan = LSGANLoss()
        self.add_optimizer("G", [self.nets["G"], self.nets["F"]], config.learning_rate, config.betas)
        self.add_optimizer("D", [self.nets["D"]], config.learning_rate, config.betas)

    def with_condition(self, output: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """``output`` ``(B, C_out, *S)`` followed by ``sample``'s condition channels."""
        if not self.condition_channels:
            return output
        return torch.cat([output, sample[:, -self.condition_channels:]], dim=1)

    def nce(self, source: torch.Tensor, output: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """PatchNCE between ``source`` (keys) and ``output`` (queries), averaged over the layers."""
        layers = self.config.nce_layers
        keys, locations = self.nets["F"](self.nets["G"].encode(source, layers), self.config.nce_patches, None, generator)
        queries, _ = self.nets["F"](self.nets["G"].encode(output, layers), self.config.nce_patches, locations)
        return torch.stack([patch_nce_loss(q, k, self.config.nce_temperature) for q, k in zip(queries, keys)]).mean()

    def train_step(self, batch: Batch, generator: torch.Generator) -> dict[str, float]:
        config, nets = self.config, self.nets
        real_a, real_b = batch.real_a, batch.real_b
        n = real_a.shape[0]
        both = torch.cat([real_a, real_b], 0) if self.use_identity else real_a
        output = nets["G"](both)
        fake_b = self.with_condition(output[:n], real_a)

        # discriminator
        loss_d = 0.5 * (self.gan(nets["D"](real_b), True) + self.gan(nets["D"](fake_b.detach()), False))
        self.update("D", loss_d, [nets["D"]])

        # generator and MLP head
        set_requires_grad([nets["D"]], False)
        losses = {"gan": config.lambda_gan * self.gan(nets["D"](fake_b), True)}
        nce = self.nce(real_a, fake_b, generator)
        if self.use_identity:
            idt_b = self.with_condition(output[n:], real_b)
            nce = 0.5 * (nce + self.nce(real_b, idt_b, generator))
        losses["nce"] = config.lambda_nce * nce
        total = sum(losses.values())
        self.update("G", total, [nets["G"], nets["F"]])
        set_requires_grad([nets["D"]], True)

        result = {name: float(value.detach()) for name, value in losses.items()}
        result["generator"] = float(total.detach())
        result["discriminator"] = float(loss_d.detach())
        return result
