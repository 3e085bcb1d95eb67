"""The FFC layers: shapes, exact spectral plumbing, equivariance where it holds, global receptive field."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from diff4mmlits.inpaint.network import (
    FFC,
    FFC_BN_ACT,
    FFCInpainter,
    FFCResnetBlock,
    FourierUnit,
    InpainterArchitecture,
    SpectralTransform,
    composite,
)


@pytest.mark.parametrize("size", [(16, 16), (15, 22)])
def test_fourier_unit_and_spectral_transform_keep_shapes(size: tuple[int, int]) -> None:
    x = torch.randn(2, 6, *size)
    assert FourierUnit(6, 4)(x).shape == (2, 4, *size)
    assert SpectralTransform(6, 8)(x).shape == (2, 8, *size)
    assert SpectralTransform(6, 8, stride=2)(x).shape == (2, 8, size[0] // 2, size[1] // 2)


def test_local_fourier_unit_keeps_shapes_on_even_sizes() -> None:
    assert SpectralTransform(8, 8, enable_lfu=True)(torch.randn(2, 8, 12, 16)).shape == (2, 8, 12, 16)


@pytest.mark.parametrize(("ratio_in", "ratio_out"), [(0.0, 0.0), (0.0, 0.75), (0.75, 0.75), (0.75, 0.0)])
def test_ffc_splits_channels_by_the_global_ratios(ratio_in: float, ratio_out: float) -> None:
    layer = FFC_BN_ACT(16, 16, 3, ratio_in, ratio_out, padding=1)
    x_l = torch.randn(2, 16 - int(16 * ratio_in), 10, 12)
    x_g = torch.randn(2, int(16 * ratio_in), 10, 12) if ratio_in else None
    out_l, out_g = layer((x_l, x_g))
    assert (out_l.shape[1] if out_l is not None else 0) == 16 - int(16 * ratio_out)
    assert (out_g.shape[1] if out_g is not None else 0) == int(16 * ratio_out)
    for out in (out_l, out_g):
        assert out is None or out.shape[-2:] == (10, 12)


def test_resnet_block_is_residual_on_both_branches() -> None:
    block = FFCResnetBlock(16, ratio=0.75)
    x = (torch.randn(2, 4, 8, 8), torch.randn(2, 12, 8, 8))
    out = block(x)
    assert out[0].shape == x[0].shape and out[1].shape == x[1].shape
    for conv in (block.conv1, block.conv2):  # zero the last layer's output → identity
        conv.bn_l.weight.data.zero_(), conv.bn_l.bias.data.zero_(), conv.bn_g.weight.data.zero_(), conv.bn_g.bias.data.zero_()
    block.eval()
    out = block(x)
    assert torch.equal(out[0], x[0]) and torch.equal(out[1], x[1])


def _linear_fourier_unit(channels: int, weights: torch.Tensor) -> FourierUnit:
    """A FourierUnit whose spectral 1×1 convolution is ``weights`` (2C × 2C) and has no BN/ReLU."""
    unit = FourierUnit(channels, channels)
    unit.bn, unit.act = nn.Identity(), nn.Identity()
    unit.conv.weight.data = weights[:, :, None, None]
    return unit


@pytest.mark.parametrize("size", [(12, 12), (9, 14)])
def test_fourier_unit_spectral_plumbing_is_exact(size: tuple[int, int]) -> None:
    """With identity spectral weights the unit is the identity (rfft2 → stack → irfft2 round trip);
    with complex-linear weights [[A, −B], [B, A]] it is a circular convolution, so it commutes with
    circular shifts. (LaMa's BN and ReLU act on real and imaginary parts separately, which a shift
    rotates, so the trained unit is global but not shift-equivariant; that is the design.)"""
    torch.manual_seed(1)
    c = 3
    x = torch.randn(2, c, *size)
    identity = _linear_fourier_unit(c, torch.eye(2 * c))
    torch.testing.assert_close(identity(x), x, atol=1e-5, rtol=1e-5)
    a, b = torch.randn(c, c), torch.randn(c, c)
    unit = _linear_fourier_unit(c, torch.cat([torch.cat([a, -b], 1), torch.cat([b, a], 1)], 0))
    shift = (3, -2)
    torch.testing.assert_close(unit(torch.roll(x, shift, dims=(-2, -1))), torch.roll(unit(x), shift, dims=(-2, -1)),
                               atol=1e-5, rtol=1e-5)


def test_local_branch_is_equivariant_to_circular_shifts() -> None:
    layer = FFC(4, 6, 3, 0.0, 0.0, padding=1, padding_mode="circular").eval()
    x = torch.randn(1, 4, 10, 10)
    shifted, _ = layer((torch.roll(x, (2, 5), dims=(-2, -1)), None))
    torch.testing.assert_close(shifted, torch.roll(layer((x, None))[0], (2, 5), dims=(-2, -1)))


def test_global_branch_sees_the_whole_slice_in_one_layer() -> None:
    x = torch.zeros(1, 4, 24, 24)
    poked = x.clone()
    poked[0, :, 2, 2] = 5.0
    spectral = SpectralTransform(4, 4).eval()
    local = nn.Conv2d(4, 4, 3, padding=1)
    far = (slice(None), slice(None), slice(14, 24), slice(14, 24))  # ≥ 12 voxels from the poke
    assert (spectral(poked) - spectral(x))[far].abs().max() > 1e-4
    assert torch.equal((local(poked) - local(x))[far], torch.zeros_like(local(x)[far]))


@pytest.mark.parametrize("lfu", [False, True])
def test_inpainter_keeps_any_slice_size_and_batch_items_independent(lfu: bool) -> None:
    net = FFCInpainter(InpainterArchitecture(base_channels=8, max_channels=32, n_downsampling=2, n_blocks=1,
                                             enable_lfu=lfu)).eval()
    image, mask = torch.rand(3, 1, 27, 33) * 2 - 1, (torch.rand(3, 1, 27, 33) > 0.7).float()
    phase = torch.tensor([0, 2, 3])
    out = net(image, mask, phase)
    assert out.shape == (3, 1, 27, 33) and out.abs().max() <= 1
    order = torch.tensor([2, 0, 1])
    torch.testing.assert_close(net(image[order], mask[order], phase[order]), out[order], atol=1e-5, rtol=1e-5)


def test_inpainter_never_sees_the_hidden_pixels() -> None:
    net = FFCInpainter(InpainterArchitecture(base_channels=8, max_channels=32, n_downsampling=2, n_blocks=1)).eval()
    image, mask = torch.rand(2, 1, 16, 16), torch.zeros(2, 1, 16, 16)
    mask[:, :, 4:9, 5:11] = 1
    changed = torch.where(mask > 0, torch.full_like(image, 0.9), image)
    phase = torch.tensor([1, 2])
    assert torch.equal(net(image, mask, phase), net(changed, mask, phase))


def test_composite_keeps_known_pixels_bit_for_bit() -> None:
    image = torch.randn(2, 1, 8, 8)
    mask = (torch.rand(2, 1, 8, 8) > 0.5).float()
    prediction = torch.full_like(image, float("nan"))
    out = composite(prediction, image, mask)
    assert torch.equal(out[mask == 0], image[mask == 0])
    assert torch.isnan(out[mask == 1]).all()


def test_a_2_5d_inpainter_uses_the_neighbour_slices_but_never_their_holes() -> None:
    net = FFCInpainter(InpainterArchitecture(base_channels=8, max_channels=32, n_downsampling=2, n_blocks=1,
                                             context_slices=1)).eval()
    torch.nn.init.normal_(net.head[1].weight, std=0.05)  # the residual head starts at zero: wake it up
    image, mask = torch.rand(2, 1, 16, 16), torch.zeros(2, 1, 16, 16)
    mask[:, :, 4:9, 5:11] = 1
    context, context_mask = torch.rand(2, 2, 16, 16), mask.repeat(1, 2, 1, 1)
    phase = torch.tensor([1, 2])
    out = net(image, mask, phase, context, context_mask)
    other = context.clone()
    other[:, :, 12:, 12:] = -1.0  # another neighbourhood outside the holes
    assert not torch.allclose(net(image, mask, phase, other, context_mask), out)
    hidden = torch.where(context_mask > 0, torch.full_like(context, 0.9), context)  # only inside the holes
    assert torch.equal(net(image, mask, phase, hidden, context_mask), out)
    with pytest.raises(ValueError, match="neighbour slices"):
        net(image, mask, phase)
