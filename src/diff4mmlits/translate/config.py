"""The ``translate`` configuration section (unpaired cross-modality translation)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from diff4mmlits import Phase
from diff4mmlits.settings import Section

TranslateMethod = Literal["essnet", "cyclegan", "cut"]
"""EssNet (CycleGAN + segmentation constraint), CycleGAN, or CUT."""


class TranslateConfig(Section):
    """``train-translator`` / ``translate``: EssNet, CycleGAN or CUT (unpaired, 2D slice-wise by default).

    Defaults follow CycleGAN (Zhu et al. 2017) and CUT (Park et al. 2020): Adam 2e-4 with
    betas (0.5, 0.999), a constant learning rate then a linear decay to zero over the last half,
    cycle weight 10, identity weight 0.5, image pools of 50, a 9-block ResNet generator with
    64 filters, a 70×70 PatchGAN, InfoNCE temperature 0.07 on 256 patches.
    """

    method: TranslateMethod = "essnet"
    spatial_dims: Literal[2, 3] = 2
    """2: axial slices (CPU-friendly, the default); 3: cubes of ``crop_vox``³."""
    source_phase: Phase = "PVP"
    """The phase of the source dataset that is translated (the label must lie on its grid)."""
    target_phase: Phase = "PVP"
    """The phase file of the target dataset that holds its images (an MRI dataset stores them as PVP)."""
    source_intensity: Literal["window", "percentile"] = "window"
    source_window_hu: tuple[float, float] = (-250.0, 350.0)
    target_intensity: Literal["window", "percentile"] = "percentile"
    """``percentile`` for MRI (arbitrary units), ``window`` for a CT target."""
    target_window_hu: tuple[float, float] = (-250.0, 350.0)
    percentiles: tuple[float, float] = (0.5, 99.5)
    """Per-volume percentiles mapped to [-1, 1] for ``percentile`` intensities."""
    crop_vox: int = Field(256, ge=8)
    """Side of the training crops in voxels (a multiple of 4)."""
    batch_size: int = Field(1, ge=1)
    steps: int = Field(200_000, ge=0)
    decay_fraction: float = Field(0.5, ge=0, le=1)
    """Share of the steps at the end over which the learning rate falls linearly to zero."""
    learning_rate: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = (0.5, 0.999)
    generator_filters: int = 64
    generator_blocks: int = 9
    discriminator_channels: int = 64
    discriminator_layers: int = 3
    pool_size: int = 50
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5
    """Identity loss weight, relative to ``lambda_cycle`` (CycleGAN's convention)."""
    lambda_segmentation: float = 1.0
    """EssNet: weight of the segmentation (Dice + CE) loss on the translated source images."""
    segmenter_channels: tuple[int, ...] = (32, 64, 128, 256)
    segmentation_classes: int = 3
    lambda_gan: float = 1.0
    lambda_nce: float = 1.0
    nce_temperature: float = 0.07
    nce_layers: tuple[int, ...] = (0, 2, 3, 6, 10)
    """Generator encoder taps for PatchNCE (0 = input, 1 = stem, 2-3 = downsampling, 3+k = residual block k)."""
    nce_patches: int = 256
    nce_features: int = 256
    nce_identity: bool = True
    checkpoint_every_steps: int = Field(1000, ge=1)
    log_every_steps: int = Field(10, ge=1)
    translate_batch_slices: int = Field(16, ge=1)
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "crop_vox": 32, "batch_size": 2, "steps": 4, "generator_filters": 8, "generator_blocks": 2,
            "discriminator_channels": 8, "discriminator_layers": 2, "pool_size": 4, "segmenter_channels": (4, 8, 16),
            "nce_layers": (0, 2, 3, 4), "nce_patches": 32, "nce_features": 32, "checkpoint_every_steps": 2, "log_every_steps": 1,
        },
        "demo": {
            "crop_vox": 64, "batch_size": 4, "steps": 300, "generator_filters": 16, "generator_blocks": 4,
            "discriminator_channels": 16, "discriminator_layers": 3, "pool_size": 20, "segmenter_channels": (8, 16, 32),
            "nce_layers": (0, 2, 3, 5, 7), "nce_patches": 128, "nce_features": 64, "checkpoint_every_steps": 100,
        },
        "paper": {},
    }
