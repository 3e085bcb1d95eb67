"""Every backbone takes the four phases and returns three classes; bad patch sizes are input errors."""

from __future__ import annotations

import pytest
import torch

from diff4mmlits.errors import InputError
from diff4mmlits.segment.config import SegmentConfig
from diff4mmlits.segment.networks import NETWORKS, build_network, main_output
from diff4mmlits.segment.plan import Fingerprint, plan_segmenter

SMALL = dict(patch_size_vox=(16, 16, 16), base_filters=4, max_filters=16, max_pooling_steps=2)


def _plan(**overrides):
    config = SegmentConfig(**{**SMALL, **overrides})
    return plan_segmenter(Fingerprint([(1.0, 1.0, 1.0)], [(32, 32, 32)], {}, (-21.0, 189.0)), config), config


def _unchecked_plan(**overrides):
    """A plan for settings the configuration would refuse (as a plan may derive a patch it cannot check)."""
    config = SegmentConfig(**SMALL).model_copy(update=overrides)
    return plan_segmenter(Fingerprint([(1.0, 1.0, 1.0)], [(32, 32, 32)], {}, (-21.0, 189.0)), config), config


@pytest.mark.parametrize("backbone", ["dynunet", "unet", "attention-unet", "segresnet"])
def test_backbone_maps_four_phases_to_three_classes(backbone) -> None:
    plan, config = _plan(backbone=backbone, deep_supervision=False)
    net = build_network(plan, config).eval()
    with torch.no_grad():
        out = main_output(net(torch.randn(1, 4, *plan.patch_size_vox)))
    assert out.shape == (1, 3, *plan.patch_size_vox)


def test_dynunet_takes_the_plan_and_deep_supervision_heads() -> None:
    plan, config = _plan(deep_supervision=True, max_pooling_steps=3, patch_size_vox=(32, 32, 32))
    net = build_network(plan, config)
    assert [tuple(s) for s in net.strides] == plan.strides and list(net.filters) == plan.filters
    out = net.train()(torch.randn(2, 4, 32, 32, 32))
    assert plan.depth == 4
    assert out.shape == (2, 3, 3, 32, 32, 32)  # the main output + min(2, depth - 2) = 2 heads
    assert main_output(out).shape == (2, 3, 32, 32, 32)


@pytest.mark.parametrize(("backbone", "factor"), [("swin-unetr", 32), ("vnet", 16)])
def test_backbones_that_need_larger_patches_say_so(backbone, factor) -> None:
    """The configuration refuses such a patch when it is given; the network refuses one a plan derived
    (here given past the configuration's check)."""
    with pytest.raises(ValueError, match=f"multiple of {factor}"):
        SegmentConfig(**{**SMALL, "backbone": backbone, "patch_size_vox": (24, 24, 24)})
    plan, config = _unchecked_plan(backbone=backbone, patch_size_vox=(24, 24, 24))
    with pytest.raises(InputError, match=f"multiple of {factor}"):
        build_network(plan, config)


@pytest.mark.parametrize(("backbone", "factor"), [("swin-unetr", 32), ("vnet", 16)])
def test_a_patch_of_one_multiple_is_refused_with_the_size_that_works(backbone, factor) -> None:
    # a factor³ patch leaves a 1-voxel bottleneck, which instance norm cannot normalise: the message
    # names the smallest size that works (2·factor), not "a multiple of factor" (factor³ is one)
    plan, config = _unchecked_plan(backbone=backbone, patch_size_vox=(factor,) * 3)
    with pytest.raises(InputError, match=f"at least {2 * factor} along one"):
        build_network(plan, config)


@pytest.mark.parametrize(("backbone", "patch"), [("swin-unetr", (64, 32, 32)), ("vnet", (32, 16, 16))])
def test_heavy_backbones_map_four_phases_to_three_classes(backbone, patch) -> None:
    torch.manual_seed(0)
    plan, config = _plan(backbone=backbone, patch_size_vox=patch, deep_supervision=False)
    assert plan.patch_size_vox == patch
    net = build_network(plan, config).eval()
    with torch.no_grad():
        out = main_output(net(torch.randn(1, 4, *patch)))
    assert out.shape == (1, 3, *patch)
    assert torch.isfinite(out).all()


def test_every_registered_backbone_has_a_builder() -> None:
    assert set(NETWORKS) == {"dynunet", "unet", "attention-unet", "segresnet", "swin-unetr", "vnet"}
