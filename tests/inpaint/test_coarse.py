"""The coarse fill the FFC inpainter refines: push-pull + harmonic interpolation of the hole's rim."""

from __future__ import annotations

import torch

from diff4mmlits.inpaint.coarse import coarse_fill
from diff4mmlits.inpaint.network import FFCInpainter, InpainterArchitecture


def test_coarse_fill_interpolates_a_ramp_and_keeps_known_pixels() -> None:
    y, x = torch.meshgrid(torch.arange(20.0), torch.arange(24.0), indexing="ij")
    ramp = (0.5 * y - 0.25 * x)[None, None]
    hole = torch.zeros_like(ramp)
    hole[..., 6:13, 8:16] = 1
    hidden = torch.where(hole > 0, torch.full_like(ramp, 99.0), ramp)
    filled = coarse_fill(hidden, hole, iterations=400)
    torch.testing.assert_close(filled, ramp, atol=1e-2, rtol=0)  # harmonic functions include linear ones
    assert torch.equal(filled[hole == 0], ramp[hole == 0])


def test_coarse_fill_leaves_empty_holes_and_empty_slices_alone() -> None:
    image = torch.randn(2, 1, 8, 8)
    assert torch.equal(coarse_fill(image, torch.zeros_like(image)), image)
    hole = torch.zeros_like(image)
    hole[0] = 1  # nothing known in the first slice
    out = coarse_fill(image, hole)
    assert torch.isfinite(out).all() and torch.equal(out[1], image[1])


def test_residual_inpainter_starts_as_the_coarse_fill() -> None:
    arch = InpainterArchitecture(base_channels=8, max_channels=16, n_downsampling=2, n_blocks=1, coarse_iterations=16)
    net = FFCInpainter(arch).eval()
    image, hole = torch.rand(2, 1, 16, 20) * 2 - 1, torch.zeros(2, 1, 16, 20)
    hole[..., 5:10, 6:12] = 1
    expected = coarse_fill(torch.where(hole > 0, torch.zeros_like(image), image), hole, 16)
    torch.testing.assert_close(net(image, hole, torch.tensor([0, 3])), expected)
