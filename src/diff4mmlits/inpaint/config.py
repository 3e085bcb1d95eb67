"""The ``inpaint`` configuration section (paper step 2, the Normal CT Generator)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from diff4mmlits.settings import Section

InpaintMethod = Literal["ffc", "median", "mean-fill"]
"""What fills the tumor mask: the trained FFC network, or a baseline (median filter, liver mean + noise)."""


class InpaintConfig(Section):
    """The Normal CT Generator (paper §III-A): mask preparation, the FFC inpainter and its training.

    Defaults are the paper's and LaMa's (Suvorov et al. 2022, ``lama-fourier``) settings.
    """

    # mask preparation (paper: 5×5 closing, one 3×3 dilation of each PVP tumor, in-plane)
    close_kernel_vox: int = Field(5, ge=1)
    dilate_kernel_vox: int = Field(3, ge=1)
    close_kernel_mm: float | None = None
    """When set, the closing kernel's width in mm (overrides ``close_kernel_vox``)."""
    dilate_kernel_mm: float | None = None
    """When set, the dilation kernel's width in mm (overrides ``dilate_kernel_vox``)."""

    method: InpaintMethod = "ffc"
    """What fills the mask: the trained FFC network, or a baseline (Table V's median filter, liver mean + noise)."""
    window_hu: tuple[float, float] = (-175.0, 250.0)
    """HU window mapped to [-1, 1] for the network's input and output."""

    # network (LaMa's FFC ResNet generator, 2D)
    base_channels: int = Field(64, ge=4)
    max_channels: int = 512
    n_downsampling: int = Field(3, ge=1, le=6)
    n_blocks: int = Field(9, ge=0)
    ratio_global: float = Field(0.75, ge=0.0, lt=1.0)
    enable_lfu: bool = False
    coarse_residual: bool = True
    """Refine a smooth push-pull + harmonic fill of the hole (``False``: LaMa's plain generator output)."""
    coarse_iterations: int = Field(64, ge=0)
    context_slices: int = Field(0, ge=0, le=4)
    """2.5D (issue 14): the axial slices on each side of the one being filled are extra inputs, each with
    its own hole; 0 = the paper's single slice, the default: at 1500 steps on the phantom one
    neighbour each side was 0.2–0.6 HU worse per phase (docs/inpaint.md)."""
    discriminator_channels: int = 64
    discriminator_layers: int = Field(3, ge=1)

    # training (LaMa: Adam, generator lr 1e-3, discriminator lr 1e-4)
    steps: int = Field(100_000, ge=0)
    batch_size: int = Field(16, ge=1)
    crop_vox: int = Field(256, ge=16)
    """Square training crops, voxels (slices smaller than this are used whole)."""
    lr_generator: float = 1e-3
    lr_discriminator: float = 1e-4
    liver_slice_fraction: float = 0.8
    """Share of training slices drawn from slices that contain liver."""
    blob_mask_fraction: float = 0.5
    """Share of training masks that are tumor-like blobs inside the liver (the rest: LaMa strokes and boxes)."""
    max_hole_fraction: float = 0.5
    """Largest share of a crop that a random stroke/box mask may cover."""
    l1_hole_weight: float = 10.0
    l1_known_weight: float = 10.0
    adversarial_weight: float = 10.0
    r1_weight: float = 0.001
    r1_every_steps: int = Field(1, ge=1)
    """Lazy R1: the penalty every k steps with k times the weight (LaMa: every step)."""
    feature_matching_weight: float = 100.0
    perceptual_weight: float = 0.0
    """Off by default. > 0 needs ``perceptual_weights``: a local ResNet-50 state dict (nothing is downloaded)."""
    perceptual_weights: str | None = None
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0)
    """Exponential moving average of the generator's weights (saved and used for inference); 0 turns it off."""
    mixed_precision: bool = True
    """float16 autocast + gradient scaling on CUDA; bfloat16 autocast on a CPU that computes it in hardware."""
    log_every_steps: int = Field(50, ge=1)
    checkpoint_every_steps: int = Field(1000, ge=1)
    monitor_slices: int = 32
    """Slices of the validation split with fixed random holes, for the monitor MAE in the training log."""

    # inference
    inference_batch_size: int = Field(32, ge=1)
    median_kernel_vox: int = Field(5, ge=3)
    """Median-filter baseline: window of the iterative masked median, voxels (in-plane)."""
    mean_fill_noise: bool = True
    """Mean-fill baseline: add Gaussian noise with the liver's HU standard deviation."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"base_channels": 8, "max_channels": 32, "n_downsampling": 2, "n_blocks": 1, "discriminator_channels": 8,
                  "discriminator_layers": 2, "steps": 6, "batch_size": 4, "ema_decay": 0.5, "crop_vox": 32, "log_every_steps": 2,
                  "checkpoint_every_steps": 3, "monitor_slices": 4, "inference_batch_size": 16},
        "demo": {"base_channels": 16, "max_channels": 64, "n_downsampling": 2, "n_blocks": 3, "discriminator_channels": 16,
                 "discriminator_layers": 2, "steps": 400, "batch_size": 8, "r1_every_steps": 4, "ema_decay": 0.98, "crop_vox": 64, "lr_generator": 2e-3,
                 "lr_discriminator": 2e-4, "log_every_steps": 25, "checkpoint_every_steps": 100,
                 "monitor_slices": 16, "inference_batch_size": 32},
        "bench": {"steps": 1500, "checkpoint_every_steps": 500},
        "paper": {},
    }
