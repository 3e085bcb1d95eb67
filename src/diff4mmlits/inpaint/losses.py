"""LaMa's training losses, with the tumor region left out of every term.

- masked L1 on the hole and on the known region, with separate weights;
- the non-saturating adversarial loss of a PatchGAN discriminator where the inpainted pixels count
  as fake and the known pixels of the same image as real (LaMa's ``mask_as_fake_target``), with
  an R1 gradient penalty on real images;
- discriminator feature matching (L2 between the discriminator's features of the real and the
  inpainted image);
- optionally a perceptual loss from a local ResNet-50 (off by default; nothing is downloaded).

``valid`` maps (1 outside the excluded tumor region) zero out the patches that touch a tumor, so
the discriminator never learns that tumors are "real".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812


def masked_l1(prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the pixels where ``weight`` is 1; ``(B, 1, Y, X)`` each."""
    return ((prediction - target).abs() * weight).sum() / weight.sum().clamp_min(1.0)


def _to_patches(mask: torch.Tensor, size: torch.Size, reduce: str) -> torch.Tensor:
    """A pixel mask on the discriminator's patch grid (average or max over each patch's area)."""
    pooled = F.adaptive_avg_pool2d(mask, size) if reduce == "mean" else F.adaptive_max_pool2d(mask, size)
    return pooled.detach()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, hole: torch.Tensor,
                       valid: torch.Tensor) -> torch.Tensor:
    """Non-saturating loss: real patches → real; on the inpainted image, hole patches → fake, known patches → real.

    ``hole`` and ``valid`` are pixel masks ``(B, 1, Y, X)``; patches touching an invalid pixel count 0.
    """
    size = real_logits.shape[-2:]
    fake_target = _to_patches(hole, size, "mean")
    weight = 1.0 - _to_patches(1.0 - valid, size, "max")
    real_loss = F.softplus(-real_logits)
    fake_loss = fake_target * F.softplus(fake_logits) + (1 - fake_target) * F.softplus(-fake_logits)
    return ((real_loss + fake_loss) * weight).sum() / weight.sum().clamp_min(1.0)


def generator_adversarial_loss(fake_logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss ``softplus(−D(inpainted))`` over the valid patches."""
    weight = 1.0 - _to_patches(1.0 - valid, fake_logits.shape[-2:], "max")
    return (F.softplus(-fake_logits) * weight).sum() / weight.sum().clamp_min(1.0)


def r1_penalty(real_logits: torch.Tensor, real_input: torch.Tensor) -> torch.Tensor:
    """R1: mean over the batch of ``‖∇_x D(x)‖²`` at real images (Mescheder et al. 2018).

    ``real_logits`` should come from a float32 pass: the gradient of 1 per logit that R1 starts from,
    times a float16 gradient scaler's 2**16, overflows float16 (the trainer runs this pass with
    autocast off).
    """
    (grad,) = torch.autograd.grad(real_logits.float().sum(), real_input, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


def feature_matching_loss(fake_features: list[torch.Tensor], real_features: list[torch.Tensor],
                          valid: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the discriminator's intermediate features, over valid positions."""
    terms = []
    for fake, real in zip(fake_features, real_features):
        weight = 1.0 - _to_patches(1.0 - valid, fake.shape[-2:], "max")
        per_position = (fake.float() - real.float().detach()).pow(2).mean(dim=1, keepdim=True)
        terms.append((per_position * weight).sum() / weight.sum().clamp_min(1.0))
    return torch.stack(terms).mean()
