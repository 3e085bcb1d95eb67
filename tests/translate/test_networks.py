"""ResNet generator, PatchGAN discriminator, LSGAN loss, image pool, segmenter."""

from __future__ import annotations

import pytest
import torch

from diff4mmlits.translate.networks import (
    ImagePool,
    LSGANLoss,
    ResnetGenerator,
    build_discriminator,
    build_segmenter,
)


@pytest.mark.parametrize("dims, size", [(2, (32, 24)), (3, (8, 16, 12))])
def test_generator_keeps_the_shape_and_range(dims: int, size: tuple[int, ...]) -> None:
    generator = ResnetGenerator(in_channels=2, out_channels=1, filters=4, n_blocks=2, spatial_dims=dims)
    x = torch.rand(2, 2, *size) * 2 - 1
    y = generator(x)
    assert y.shape == (2, 1, *size)
    assert y.min() >= -1 and y.max() <= 1


def test_generator_taps_have_the_announced_channels_and_sizes() -> None:
    generator = ResnetGenerator(in_channels=1, filters=4, n_blocks=3)
    assert generator.tap_channels == (1, 4, 8, 16, 16, 16, 16)
    x = torch.randn(1, 1, 32, 32)
    features = generator.encode(x, [0, 1, 2, 3, 6])
    assert [f.shape[1] for f in features] == [1, 4, 8, 16, 16]
    assert [f.shape[-1] for f in features] == [32, 32, 16, 8, 8]
    assert torch.equal(features[0], x)
    with pytest.raises(ValueError, match="tap 7"):
        generator.encode(x, [7])


@pytest.mark.parametrize("dims", [2, 3])
def test_patch_discriminator_gives_a_patch_map(dims: int) -> None:
    discriminator = build_discriminator(in_channels=1, filters=4, n_layers=2, spatial_dims=dims)
    out = discriminator(torch.randn(2, 1, *([32] * dims)))
    assert isinstance(out, list)
    patch_map = out[-1]
    assert patch_map.shape[:2] == (2, 1) and all(1 < s < 32 for s in patch_map.shape[2:])


def test_lsgan_loss_is_the_mean_squared_distance_to_the_target() -> None:
    loss = LSGANLoss()
    prediction = torch.tensor([[[[0.0, 1.0], [1.0, 0.5]]]])
    assert loss(prediction, True).item() == pytest.approx((1 + 0 + 0 + 0.25) / 4)
    assert loss([torch.zeros(1), prediction], False).item() == pytest.approx((0 + 1 + 1 + 0.25) / 4)


def test_image_pool_fills_then_mixes_old_and_new() -> None:
    pool = ImagePool(size=3)
    generator = torch.Generator().manual_seed(0)
    first = torch.arange(3.0).view(3, 1, 1, 1)
    assert torch.equal(pool.query(first, generator), first)  # filling: returned as is
    returned = torch.cat([pool.query(torch.full((1, 1, 1, 1), 10.0 + i), generator) for i in range(40)])
    assert (returned < 3).any() and (returned >= 10).any()  # old images come back, new ones pass
    assert len(pool.images) == 3
    restored = ImagePool(size=3)
    restored.load_state(pool.state(), torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(pool.images, restored.images))
    assert torch.equal(ImagePool(size=0).query(first, generator), first)


def test_segmenter_outputs_one_logit_map_per_class() -> None:
    segmenter = build_segmenter(in_channels=1, classes=3, channels=(4, 8, 16))
    assert segmenter(torch.randn(2, 1, 32, 32)).shape == (2, 3, 32, 32)
