"""A fast, smooth first guess of the hole: push-pull interpolation refined by harmonic (Laplace) iterations.

The FFC inpainter predicts a correction on top of this guess (see
:class:`~diff4mmlits.inpaint.network.FFCInpainter`), the way two-stage inpainters refine a coarse
fill. It is a classical interpolation written in torch so that it runs batched on the network's
device during training and inference:

1. push-pull (Gortler et al. 1996): average the known pixels over a pyramid until every cell has
   one, then interpolate back down, blending each level's known values with the coarser guess;
2. Jacobi iterations of the discrete Laplace equation inside the hole with the known pixels as
   the boundary: the hole converges to the harmonic interpolation of its rim.

Tensors are ``(B, 1, Y, X)``; ``hole`` is 1 where pixels are unknown. Pixels outside the hole are
returned unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812


def push_pull(image: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Fill the unknown pixels by pyramid averaging of the known ones (a slice with nothing known stays 0)."""
    sums, weights = [image * known], [known]
    while (weights[-1] <= 0).any() and min(weights[-1].shape[-2:]) > 1:
        sums.append(F.avg_pool2d(sums[-1], 2, ceil_mode=True))
        weights.append(F.avg_pool2d(weights[-1], 2, ceil_mode=True))
    estimate = sums[-1] / weights[-1].clamp_min(1e-6)
    for total, weight in zip(reversed(sums[:-1]), reversed(weights[:-1])):
        upsampled = F.interpolate(estimate, size=total.shape[-2:], mode="bilinear", align_corners=False)
        local = total / weight.clamp_min(1e-6)
        blend = weight.clamp(0.0, 1.0)
        estimate = torch.where(weight > 0, local * blend + upsampled * (1 - blend), upsampled)
    return estimate


_LAPLACE = torch.tensor([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]]).view(1, 1, 3, 3)


def harmonic_fill(image: torch.Tensor, hole: torch.Tensor, initial: torch.Tensor, iterations: int) -> torch.Tensor:
    """``iterations`` Jacobi sweeps of Laplace's equation in the hole, the known pixels fixed."""
    known = hole <= 0.5
    kernel = _LAPLACE.to(image)
    estimate = torch.where(known, image, initial)
    for _ in range(iterations):
        neighbours = F.conv2d(F.pad(estimate, (1, 1, 1, 1), mode="replicate"), kernel)
        estimate = torch.where(known, image, neighbours)
    return estimate


def coarse_fill(image: torch.Tensor, hole: torch.Tensor, iterations: int = 64) -> torch.Tensor:
    """The smooth first guess: push-pull, then ``iterations`` harmonic sweeps; unchanged outside the hole."""
    if not bool((hole > 0.5).any()):
        return image
    known = (hole <= 0.5).to(image.dtype)
    with torch.autocast(device_type=image.device.type, enabled=False):
        start = push_pull(image.float(), known.float())
        filled = harmonic_fill(image.float(), hole.float(), start, iterations)
    return torch.where(hole > 0.5, filled.to(image.dtype), image)
