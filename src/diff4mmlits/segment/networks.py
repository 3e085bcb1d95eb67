"""The segmentation backbones (paper Tables I and III), MONAI networks configured from the plan.

Every network takes ``(B, 4, Z, Y, X)`` (the phases NC, AP, PVP, DP, normalised) and returns
logits ``(B, 3, Z, Y, X)`` (background, liver, tumor). ``dynunet`` is the default: MONAI's DynUNet
is nnU-Net's U-Net, and it takes the plan's kernels, strides and filters as they are; with deep
supervision it returns ``(B, 1 + heads, 3, Z, Y, X)`` while training (all heads at full size).
The other backbones use the plan's filters and depth where their constructor allows, and say
which patch sizes they need.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch

from diff4mmlits import PHASES
from diff4mmlits.errors import InputError
from diff4mmlits.segment.config import SegmentConfig, backbone_patch_problem
from diff4mmlits.segment.plan import SegmenterPlan, divisibility
from diff4mmlits.training import autocast, half_dtype

IN_CHANNELS = len(PHASES)
OUT_CHANNELS = 3

MODEL_KIND = "segmenter"
"""The ``kind`` in a segmenter model folder's ``config.json``."""
BEST_NAME = "best.safetensors"
"""The weights of the best validation epoch in a segmenter's model folder (``weights.safetensors``: the last)."""


def network_autocast(device: torch.device, config: SegmentConfig) -> contextlib.AbstractContextManager:
    """The segmenter's precision, in training and inference alike: ``segment.mixed_precision`` is
    bfloat16 on CUDA (float16 with a gradient scaler where bf16 is missing) and on a CPU that computes
    bfloat16 in hardware."""
    return autocast(device, config.mixed_precision, half_dtype(device))


def deep_supervision_heads(plan: SegmenterPlan, config: SegmentConfig) -> int:
    """Number of extra (lower-resolution) outputs DynUNet adds when deep supervision is on."""
    if config.backbone != "dynunet" or not config.deep_supervision:
        return 0
    return max(0, min(2, plan.depth - 2))


def build_dynunet(plan: SegmenterPlan, config: SegmentConfig) -> torch.nn.Module:
    from monai.networks.nets import DynUNet

    heads = deep_supervision_heads(plan, config)
    return DynUNet(
        spatial_dims=3,
        in_channels=IN_CHANNELS,
        out_channels=OUT_CHANNELS,
        kernel_size=[list(k) for k in plan.kernel_sizes],
        strides=[list(s) for s in plan.strides],
        upsample_kernel_size=[list(s) for s in plan.strides[1:]],
        filters=list(plan.filters),
        norm_name=("INSTANCE", {"affine": True}),
        deep_supervision=heads > 0,
        deep_supr_num=max(1, heads),
    )


def _isotropic_levels(plan: SegmenterPlan, limit: int) -> int:
    """How many isotropic ×2 downsamplings the plan's patch allows (for nets that pool every axis)."""
    smallest = min(divisibility(plan.strides))
    return max(1, min(limit, int(math.log2(smallest)) + 1))


def _require_divisible(name: str, plan: SegmenterPlan) -> None:
    """Raise unless the plan's patch suits ``name`` (:func:`~diff4mmlits.segment.config.backbone_patch_problem`)."""
    problem = backbone_patch_problem(name, plan.patch_size_vox)
    if problem:
        raise InputError(problem)


def build_unet(plan: SegmenterPlan, config: SegmentConfig) -> torch.nn.Module:
    from monai.networks.nets import UNet

    levels = _isotropic_levels(plan, plan.depth)
    return UNet(
        spatial_dims=3, in_channels=IN_CHANNELS, out_channels=OUT_CHANNELS,
        channels=list(plan.filters[:levels]), strides=[2] * (levels - 1), num_res_units=2, norm="INSTANCE",
    )


def build_attention_unet(plan: SegmenterPlan, config: SegmentConfig) -> torch.nn.Module:
    from monai.networks.nets import AttentionUnet

    levels = _isotropic_levels(plan, plan.depth)
    return AttentionUnet(
        spatial_dims=3, in_channels=IN_CHANNELS, out_channels=OUT_CHANNELS,
        channels=list(plan.filters[:levels]), strides=[2] * (levels - 1),
    )


def build_segresnet(plan: SegmenterPlan, config: SegmentConfig) -> torch.nn.Module:
    from monai.networks.nets import SegResNet

    levels = _isotropic_levels(plan, 4)
    return SegResNet(
        spatial_dims=3, in_channels=IN_CHANNELS, out_channels=OUT_CHANNELS, init_filters=config.base_filters,
        blocks_down=(1, 2, 2, 4)[:levels], blocks_up=(1, 1, 1)[: levels - 1], norm="INSTANCE",
    )


def build_swin_unetr(plan: SegmenterPlan, config: SegmentConfig) -> torch.nn.Module:
    from monai.networks.nets import SwinUNETR

    _require_divisible("swin-unetr", plan)
    feature_size = max(12, 12 * round(config.base_filters / 12))
    return SwinUNETR(in_channels=IN_CHANNELS, out_channels=OUT_CHANNELS, feature_size=feature_size, spatial_dims=3)


def build_vnet(plan: SegmenterPlan, config: SegmentConfig) -> torch.nn.Module:
    from monai.networks.nets import VNet

    _require_divisible("vnet", plan)
    return VNet(spatial_dims=3, in_channels=IN_CHANNELS, out_channels=OUT_CHANNELS)


NETWORKS: dict[str, Callable[[SegmenterPlan, SegmentConfig], torch.nn.Module]] = {
    "dynunet": build_dynunet,
    "unet": build_unet,
    "attention-unet": build_attention_unet,
    "segresnet": build_segresnet,
    "swin-unetr": build_swin_unetr,
    "vnet": build_vnet,
}


def build_network(plan: SegmenterPlan, config: SegmentConfig) -> torch.nn.Module:
    """The backbone named by ``config.backbone``, configured from the plan."""
    if config.backbone not in NETWORKS:
        raise InputError(f"unknown backbone {config.backbone!r}; choose one of {', '.join(NETWORKS)}")
    return NETWORKS[config.backbone](plan, config)


def main_output(output: torch.Tensor) -> torch.Tensor:
    """The full-resolution logits ``(B, 3, Z, Y, X)`` of a network output (drops deep-supervision heads)."""
    return output[:, 0] if output.ndim == 6 else output
