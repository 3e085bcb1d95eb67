"""EssNet: CycleGAN plus a segmentation network on the translated images, in one optimisation.

Rafiq et al. 2025 (``papers/essnet-ct-to-mri-summary.txt``) translate labelled CT into MRI-like
images with a "deformation-invariant" CycleGAN; the closest public design is SynSeg-Net (Huo et
al. 2018). A segmenter ``S`` (MONAI UNet) reads the translated source images ``G_AB(a)`` and is
trained with the *source* labels; its loss also flows back into ``G_AB``, with the generators in
the same optimiser. A generator that moved or distorted the anatomy would make the source labels
wrong for its output and be penalised, so the labels stay valid on the translated images::

    L_G(EssNet) = L_G(CycleGAN) + λ_seg · DiceCE(S(G_AB(a)), label_a)
"""

from __future__ import annotations

import torch
from monai.losses import DiceCELoss

from diff4mmlits.distributed import DistributedContext
from diff4mmlits.translate.base import Batch
from diff4mmlits.translate.config import TranslateConfig
from diff4mmlits.translate.cyclegan import CycleGAN
from diff4mmlits.translate.networks import build_segmenter


class EssNet(CycleGAN):
    """CycleGAN with the segmentation constraint on ``G_AB``'s output (source labels, 0..classes-1)."""

    method = "essnet"
    needs_labels = True

    def __init__(
        self, config: TranslateConfig, in_channels: int = 1, out_channels: int = 1,
        condition_channels: int = 0, context: DistributedContext | None = None,
    ) -> None:
        super().__init__(config, in_channels, out_channels, condition_channels, context)
        self.nets["S"] = build_segmenter(out_channels, config.segmentation_classes, config.segmenter_channels, config.spatial_dims)
        self.segmentation_loss = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
        self.add_optimizer("G", self.generator_modules(), config.learning_rate, config.betas)

    def generator_modules(self) -> list[torch.nn.Module]:
        modules = super().generator_modules()
        return modules + [self.nets["S"]] if "S" in self.nets else modules

    def extra_generator_losses(self, batch: Batch, fake_b: torch.Tensor) -> dict[str, torch.Tensor]:
        if batch.label_a is None:
            raise ValueError("EssNet needs the source labels in every batch")
        logits = self.nets["S"](fake_b)
        return {"segmentation": self.config.lambda_segmentation * self.segmentation_loss(logits, batch.label_a)}
