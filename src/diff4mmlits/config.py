"""Typed configuration: one frozen section per stage, presets, YAML files and ``--set`` overrides.

Resolution order (later wins): the section defaults (the paper's settings) → the preset
(``smoke``, ``demo`` or ``paper``) → a YAML config file → ``--set key=value`` overrides. The fully
resolved configuration is saved as ``runs/<name>/config.yaml``. Unknown keys are errors.

Each section keeps its own preset overrides in ``PRESETS`` next to its fields, so that the
settings of one stage are read in one place.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from diff4mmlits.errors import InputError

PRESET_NAMES: tuple[str, ...] = ("smoke", "demo", "paper")
Preset = Literal["smoke", "demo", "paper"]


class Section(BaseModel):
    """Base of every configuration section: strict (unknown keys fail) and frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}


# --- data and phantom ----------------------------------------------------------------------
class DataConfig(Section):
    """How datasets are read."""

    annotated_phase: Literal["NC", "AP", "PVP", "DP"] = "PVP"
    test_fraction: float = 0.2
    """Share of cases held out from every training stage, for evaluation (at least one case)."""
    validation_fraction: float = 0.2
    """Share of the remaining cases used for validation during training."""


class PhantomConfig(Section):
    """The built-in phantom that ``demo`` generates."""

    cases: int = 12
    size: int = 64
    site: Literal["default", "second"] = "default"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"cases": 3, "size": 32},
        "demo": {"cases": 12, "size": 64},
        "paper": {"cases": 40, "size": 128},
    }


class PreviewConfig(Section):
    """Per-case preview figures."""

    enabled: bool = True
    window_hu: tuple[float, float] = (-160.0, 240.0)
    """Display window for figures, HU."""


# --- register ------------------------------------------------------------------------------
class RegisterConfig(Section):
    """Paper step 1: rough, liver-focused registration of every phase onto the annotated phase.

    Each stage of the chain (rigid → affine → B-spline, cut at ``method``) runs SimpleITK's
    ``ImageRegistrationMethod`` with Mattes mutual information over the liver region of interest,
    multi-resolution over ``shrink_factors`` / ``smoothing_sigmas_mm`` (one entry per level).
    """

    method: Literal["none", "rigid", "affine", "bspline"] = "bspline"
    """How far the chain goes; ``none`` only resamples every phase onto the annotated grid."""
    margin_mm: float = 20.0
    """The region of interest is the annotated liver (label > 0) dilated by this margin, mm."""
    shrink_factors: tuple[int, ...] = (4, 2, 1)
    """Multi-resolution levels, coarse to fine: shrink factor of each level (voxels)."""
    smoothing_sigmas_mm: tuple[float, ...] = (4.0, 2.0, 0.0)
    """Gaussian smoothing of each level, mm (same length as ``shrink_factors``)."""
    rigid_iterations: int = 200
    """Optimizer iterations per level of the rigid stage."""
    affine_iterations: int = 200
    """Optimizer iterations per level of the affine stage."""
    bspline_iterations: int = 100
    """Optimizer iterations per level of the B-spline stage."""
    bspline_grid_mm: float = 60.0
    """Control-point spacing of the coarse B-spline grid, mm (over the annotated phase's extent)."""
    bspline_shrink_factors: tuple[int, ...] = (2,)
    """Levels of the B-spline stage (it starts from the affine result, so coarse levels suffice)."""
    bspline_smoothing_sigmas_mm: tuple[float, ...] = (2.0,)
    """Smoothing of each B-spline level, mm: keeps the deformation from fitting the noise."""
    bspline_max_displacement_mm: float = 3.0
    """Bound on each control point's displacement beyond the affine result, mm (the residual is small)."""
    histogram_bins: int = 32
    """Bins of the Mattes mutual information histogram."""
    sampling_percentage: float = 0.25
    """Share of the region-of-interest voxels sampled by the metric (random, fixed seed)."""
    sampling_min_points: int = 5000
    """At least this many metric samples per level (coarse levels of small images sample more)."""
    sampling_max_points: int = 20000
    """At most this many metric samples per level (large images sample a smaller share)."""
    sampling_seed: int = 0
    """Seed of the metric's random sampling: the same seed gives the same transforms."""
    threads: int = Field(default=1, ge=0)
    """SimpleITK threads per registration; 0 = SimpleITK's default (all cores; one inside a
    ``--workers`` process). 1 makes the transforms bit-reproducible:
    with more, ITK's metric sums the per-thread histograms in whatever order the threads finish,
    and the B-spline stage amplifies those last digits into different transforms. The stage runs
    cases in parallel processes instead (``--workers``)."""
    intensity_window_hu: tuple[float, float] = (-200.0, 300.0)
    """Intensities are clipped to this window before the metric sees them (soft tissue), HU."""
    divergence_tolerance: float = 0.0
    """A stage whose metric in the region ends worse than its start by more than this falls back."""
    fill_hu: float = -1024.0
    """Value of resampled voxels outside a phase's field of view, HU."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "shrink_factors": (2, 1), "smoothing_sigmas_mm": (2.0, 0.0), "rigid_iterations": 40,
            "affine_iterations": 20, "bspline_iterations": 10, "sampling_percentage": 0.3,
        },
        "demo": {
            "rigid_iterations": 100, "affine_iterations": 50, "bspline_iterations": 15, "sampling_percentage": 0.2,
            "bspline_max_displacement_mm": 2.0,
        },
        "paper": {},
    }

    @model_validator(mode="after")
    def _check_levels(self) -> RegisterConfig:
        if len(self.shrink_factors) != len(self.smoothing_sigmas_mm) or not self.shrink_factors:
            raise ValueError("shrink_factors and smoothing_sigmas_mm need one entry per level, as many of each")
        if any(f < 1 for f in self.shrink_factors):
            raise ValueError("shrink factors must be at least 1")
        if not 0.0 < self.sampling_percentage <= 1.0:
            raise ValueError("sampling_percentage must lie in (0, 1]")
        if not 0 < self.sampling_min_points <= self.sampling_max_points:
            raise ValueError("sampling_min_points must be > 0 and at most sampling_max_points")
        if self.margin_mm < 0 or self.bspline_grid_mm <= 0:
            raise ValueError("margin_mm must be ≥ 0 and bspline_grid_mm > 0")
        if len(self.bspline_shrink_factors) != len(self.bspline_smoothing_sigmas_mm) or not self.bspline_shrink_factors:
            raise ValueError("bspline_shrink_factors and bspline_smoothing_sigmas_mm need one entry per level, as many of each")
        if self.bspline_max_displacement_mm <= 0:
            raise ValueError("bspline_max_displacement_mm must be > 0")
        return self


# --- segment and evaluate (paper step 4, Multimodal Segmenter) ------------------------------------
SegmentBackbone = Literal["dynunet", "unet", "attention-unet", "segresnet", "swin-unetr", "vnet"]
SyntheticSource = Literal["none", "offline", "on-the-fly"]


class SegmentConfig(Section):
    """The multimodal segmenter: network, hybrid data, training and prediction (paper §III-C, §IV-B).

    Defaults are the paper's: an nnU-Net-style DynUNet on the four phases, Dice + 0.5·CE, window
    [-21, 189] HU then z-score, 96³ random crops biased toward tumors, flips/rotations/intensity
    jitter, 1000 epochs, tumors outside the liver removed after prediction.
    """

    backbone: SegmentBackbone = "dynunet"
    phases: tuple[str, ...] = ("NC", "AP", "PVP", "DP")
    """Phases the model sees; the others are filled by duplication (PVP alone: the unimodal baseline)."""
    synthetic: SyntheticSource = "on-the-fly"
    """Where synthetic cases come from: none (real only), offline (RUN/synthetic/) or on-the-fly."""
    synthetic_ratio: float = 0.5
    """Share of training samples that are synthetic (0 to 1) when synthetic is not 'none'."""
    synthesis_method: str = "ldm"
    """Painter used on the fly (diff4mmlits.synthesize.painters.load_painter's method)."""
    synthesis_mode: str = "paper"
    window_hu: tuple[float, float] = (-21.0, 189.0)
    """Intensity window applied before normalisation, HU (the paper's)."""
    normalization: Literal["dataset", "case", "none"] = "dataset"
    """z-score after the window: with the training set's liver mean/sd per phase (nnU-Net CT),
    per case and channel, or none."""
    patch_size_vox: tuple[int, int, int] | None = (96, 96, 96)
    """Training patch (z, y, x) in voxels; None lets the plan derive it from spacing and memory budget."""
    memory_budget_mb: float = 8000.0
    """Estimated activation memory the plan may use for one training batch, MB."""
    base_filters: int = 32
    max_filters: int = 320
    max_pooling_steps: int = 5
    deep_supervision: bool = True
    batch_size: int = 2
    epochs: int = 1000
    steps_per_epoch: int = 250
    optimizer: Literal["sgd", "adamw"] = "sgd"
    learning_rate: float = 0.01
    weight_decay: float = 3e-5
    poly_power: float = 0.9
    """Poly learning-rate schedule: lr = lr0 · (1 − step/steps)^power."""
    lambda_ce: float = 0.5
    """γ of the paper's loss Dice + γ·CE."""
    crop_class_ratios: tuple[float, float, float] = (1.0, 1.0, 2.0)
    """Relative chance that a crop is centred on background, liver, tumor."""
    flip_prob: float = 0.5
    rotate_prob: float = 0.2
    rotate_range_deg: float = 15.0
    intensity_prob: float = 0.3
    intensity_scale: float = 0.1
    """Random intensity scale ±, and shift ± (in z-score units), the paper's 'colour jitter'."""
    noise_prob: float = 0.1
    validate_every_epochs: int = 1
    sliding_window_overlap: float = 0.5
    sliding_window_batch: int = 2
    tta: bool = False
    """Test-time flips along every axis (8 predictions averaged)."""
    min_tumor_volume_mm3: float = 0.0
    """Predicted tumor components smaller than this are removed (0 keeps all)."""
    loader_workers: int = 2
    """DataLoader worker processes (0 loads in the training process)."""
    amp: bool = True
    """Mixed precision on CUDA (ignored on CPU)."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "patch_size_vox": (16, 16, 16), "base_filters": 4, "max_filters": 16, "max_pooling_steps": 2,
            "deep_supervision": False, "batch_size": 2, "epochs": 2, "steps_per_epoch": 3,
            "optimizer": "adamw", "learning_rate": 3e-3, "rotate_prob": 0.0, "loader_workers": 0,
            "sliding_window_overlap": 0.25,
        },
        "demo": {
            "patch_size_vox": None, "memory_budget_mb": 80.0, "base_filters": 8, "max_filters": 64,
            "max_pooling_steps": 4, "deep_supervision": False, "batch_size": 2, "epochs": 10,
            "steps_per_epoch": 20, "optimizer": "adamw", "learning_rate": 1e-2, "rotate_prob": 0.1,
            "loader_workers": 0, "sliding_window_overlap": 0.25,
            # the synthesize stage's cases (RUN/synthetic/): diffusion sampling inside the loader
            # would cost more than the whole training budget on a 2-core CPU
            "synthetic": "offline",
        },
        "paper": {},
    }

    @field_validator("phases", mode="before")
    @classmethod
    def _parse_phases(cls, value: Any) -> tuple[str, ...]:
        from diff4mmlits import PHASES

        names = [p.strip() for p in value.split(",")] if isinstance(value, str) else list(value)
        unknown = [n for n in names if n not in PHASES]
        if not names or unknown:
            raise ValueError(f"phases must be a non-empty subset of {','.join(PHASES)}")
        return tuple(p for p in PHASES if p in names)

    @field_validator("synthetic_ratio")
    @classmethod
    def _check_ratio(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise ValueError("synthetic_ratio is a share of samples, between 0 and 1")
        return value


class EvaluateConfig(Section):
    """Evaluation: the paper's metrics (DSC, Jaccard, sensitivity, precision), HD95, lesion detection."""

    lesion_min_overlap_voxels: int = 1
    """A true lesion is detected when a predicted tumor component overlaps it by at least this many voxels."""
    lesion_size_classes_mm: tuple[float, float] = (10.0, 20.0)
    """Equivalent-sphere diameter limits between small, medium and large lesions, mm."""
    hd_percentile: float = 95.0
    overlay_cases: int = 3
    """Overlay figures: best, median and worst case by tumor DSC (up to this many)."""
    window_hu: tuple[float, float] = (-160.0, 240.0)
    """Display window of overlay figures, HU."""


# --- translate: unpaired cross-modality translation ----------------------------------------
class TranslateConfig(Section):
    """``train-translator`` / ``translate``: EssNet, CycleGAN or CUT (unpaired, 2D slice-wise by default).

    Defaults follow CycleGAN (Zhu et al. 2017) and CUT (Park et al. 2020): Adam 2e-4 with
    betas (0.5, 0.999), a constant learning rate then a linear decay to zero over the last half,
    cycle weight 10, identity weight 0.5, image pools of 50, a 9-block ResNet generator with
    64 filters, a 70×70 PatchGAN, InfoNCE temperature 0.07 on 256 patches.
    """

    method: Literal["essnet", "cyclegan", "cut"] = "essnet"
    spatial_dims: Literal[2, 3] = 2
    """2: axial slices (CPU-friendly, the default); 3: cubes of ``crop_vox``³."""
    source_phase: Literal["NC", "AP", "PVP", "DP"] = "PVP"
    """The phase of the source dataset that is translated (the label must lie on its grid)."""
    target_phase: Literal["NC", "AP", "PVP", "DP"] = "PVP"
    """The phase file of the target dataset that holds its images (an MRI dataset stores them as PVP)."""
    source_intensity: Literal["window", "percentile"] = "window"
    source_window_hu: tuple[float, float] = (-250.0, 350.0)
    target_intensity: Literal["window", "percentile"] = "percentile"
    """``percentile`` for MRI (arbitrary units), ``window`` for a CT target."""
    target_window_hu: tuple[float, float] = (-250.0, 350.0)
    percentiles: tuple[float, float] = (0.5, 99.5)
    """Per-volume percentiles mapped to [-1, 1] for ``percentile`` intensities."""
    crop_vox: int = 256
    """Side of the training crops in voxels (a multiple of 4)."""
    batch_size: int = 1
    steps: int = 200_000
    decay_fraction: float = 0.5
    """Share of the steps at the end over which the learning rate falls linearly to zero."""
    learning_rate: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    generator_filters: int = 64
    generator_blocks: int = 9
    discriminator_filters: int = 64
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
    checkpoint_every: int = 1000
    log_every: int = 10
    translate_batch_slices: int = 16
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "crop_vox": 32, "batch_size": 2, "steps": 4, "generator_filters": 8, "generator_blocks": 2,
            "discriminator_filters": 8, "discriminator_layers": 2, "pool_size": 4, "segmenter_channels": (4, 8, 16),
            "nce_layers": (0, 2, 3, 4), "nce_patches": 32, "nce_features": 32, "checkpoint_every": 2, "log_every": 1,
        },
        "demo": {
            "crop_vox": 64, "batch_size": 4, "steps": 300, "generator_filters": 16, "generator_blocks": 4,
            "discriminator_filters": 16, "discriminator_layers": 3, "pool_size": 20, "segmenter_channels": (8, 16, 32),
            "nce_layers": (0, 2, 3, 5, 7), "nce_patches": 128, "nce_features": 64, "checkpoint_every": 100,
        },
        "paper": {},
    }


# --- synthesize: autoencoder, latent diffusion, tumor masks ---------------------------------
class AutoencoderConfig(Section):
    """The VQGAN-style autoencoder of the Multimodal CT Synthesizer (paper §III-B): MONAI VQVAE, 3D.

    One autoencoder for every phase (a single-channel network fed one phase at a time), trained on
    normal-CT patches; HU window ``window_hu`` → [-1, 1].
    """

    window_hu: tuple[float, float] = (-175.0, 250.0)
    """HU mapped to [-1, 1] (values outside are clipped)."""
    patch_vox: int = 96
    """Cubic training patch edge, voxels (divisible by 2**len(channels))."""
    channels: tuple[int, ...] = (64, 128)
    """Channels per encoder level; each level halves the grid (96³ → 24³ with two levels)."""
    num_res_layers: int = 2
    num_embeddings: int = 1024
    """Codebook size of the vector quantizer."""
    restart_dead_codes_every: int = 20
    """Every so many steps, codebook entries that no latent uses are moved onto encoder outputs (0 = never)."""
    embedding_dim: int = 8
    """Latent channels (the diffusion model works on these)."""
    batch_size: int = 2
    steps: int = 20000
    learning_rate: float = 1e-4
    liver_patch_fraction: float = 0.8
    """Share of training patches centred on a liver voxel (the rest anywhere in the body)."""
    tumor_patch_fraction: float = 0.25
    """Share of training patches taken around the real tumors of the registered training cases
    instead of the normal CT (0 = normal CT only). An autoencoder that never saw a tumor cannot
    decode one: the paper adapts a pretrained autoencoder that had."""
    adversarial_weight: float = 0.01
    """Weight of the PatchDiscriminator's least-squares adversarial loss (0 turns it off)."""
    adversarial_start_step: int = 2000
    """Adversarial loss off before this step (the reconstruction settles first)."""
    discriminator_channels: int = 32
    discriminator_layers: int = 3
    perceptual_weight: float = 0.0
    """MONAI PerceptualLoss weight; off by default because it downloads pretrained weights."""
    save_every_steps: int = 1000
    validation_patches: int = 32
    """Held-out patches (validation cases) for the reconstruction MAE (HU, liver)."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"patch_vox": 16, "channels": (8, 16), "num_res_layers": 1, "num_embeddings": 32, "embedding_dim": 4,
                  "batch_size": 4, "steps": 6, "learning_rate": 3e-3, "adversarial_start_step": 3,
                  "discriminator_channels": 4, "discriminator_layers": 1, "save_every_steps": 3, "validation_patches": 2,
                  "restart_dead_codes_every": 3},
        "demo": {"patch_vox": 24, "channels": (16, 32), "num_res_layers": 1, "num_embeddings": 256, "embedding_dim": 8,
                 "batch_size": 4, "steps": 450, "learning_rate": 1e-3, "adversarial_start_step": 225,
                 "discriminator_channels": 8, "discriminator_layers": 2, "save_every_steps": 150, "validation_patches": 8},
        "paper": {},
    }


class DiffusionConfig(Section):
    """The tumor synthesizer: MONAI DiffusionModelUNet in the autoencoder's latent space (paper Eq. 3).

    Trained with a DDPM noise schedule on crops around the real tumors of the registered training
    cases (every phase), conditioned by concatenating the dilated tumor mask (on the latent grid)
    and the latent of the masked CT.
    """

    mode: Literal["paper", "joint"] = "paper"
    """paper: one network, the phase as a class embedding; phases are synthesized one by one from
    the same mask and the same initial noise. joint: the latents of all phases are denoised together
    as one multi-channel latent (the paper's "all-in-one" future direction)."""
    crop_vox: int = 96
    """Cubic crop edge around a tumor, voxels (the autoencoder maps it to crop/4 latent voxels)."""
    channels: tuple[int, ...] = (128, 256, 256)
    attention_levels: tuple[bool, ...] = (False, True, True)
    num_res_blocks: int = 2
    norm_num_groups: int = 32
    num_head_channels: int = 32
    num_train_timesteps: int = 1000
    schedule: Literal["linear_beta", "scaled_linear_beta", "cosine"] = "scaled_linear_beta"
    beta_start: float = 0.0015
    beta_end: float = 0.0195
    crops_per_tumor: int = 8
    """Jittered, randomly flipped crops per real tumor (their latents are computed once)."""
    jitter_vox: int = 8
    """Largest shift of a crop's centre from the tumor's centre, voxels."""
    batch_size: int = 8
    steps: int = 30000
    learning_rate: float = 1e-4
    tumor_loss_weight: float = 1.0
    """Adds the MSE inside the tumor mask again with this weight (0 = the paper's Eq. 3 exactly). The
    tumor is a few latent voxels of the crop; without it the network learns the background first."""
    save_every_steps: int = 1000
    close_kernel_vox: int = 5
    """The paper's closing of the annotated mask before it becomes the condition (5×5)."""
    dilate_kernel_vox: int = 3
    """...followed by one dilation (3×3)."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"crop_vox": 16, "channels": (8, 16), "attention_levels": (False, False), "num_res_blocks": 1,
                  "norm_num_groups": 4, "num_head_channels": 4, "num_train_timesteps": 100, "crops_per_tumor": 2,
                  "jitter_vox": 2, "batch_size": 4, "steps": 6, "learning_rate": 1e-3, "save_every_steps": 3},
        "demo": {"crop_vox": 32, "channels": (32, 64), "attention_levels": (False, True), "num_res_blocks": 1,
                 "norm_num_groups": 8, "num_head_channels": 16, "num_train_timesteps": 1000, "crops_per_tumor": 6,
                 "jitter_vox": 4, "batch_size": 8, "steps": 400, "learning_rate": 1e-3, "save_every_steps": 200},
        "paper": {},
    }


class TumorMaskConfig(Section):
    """Random tumor masks (paper §III-B): ellipsoid, elastic deformation, inside the liver."""

    size_classes_mm: dict[str, tuple[float, float]] = {
        "tiny": (2.0, 5.0), "small": (5.0, 10.0), "medium": (10.0, 20.0), "large": (20.0, 30.0)}
    """Range of each semi-axis per size class, mm."""
    size_class_weights: dict[str, float] = {"tiny": 0.25, "small": 0.35, "medium": 0.3, "large": 0.1}
    tumors_per_case: tuple[int, int] = (1, 3)
    """Smallest and largest number of tumors painted into one case."""
    elastic_amplitude: float = 0.2
    """Elastic displacement, standard deviation as a share of the tumor's mean semi-axis."""
    elastic_smoothness: float = 0.5
    """Gaussian smoothing of the elastic field, as a share of the mean semi-axis."""
    erode_liver_mm: float = 5.0
    """Tumor centres lie this far inside the liver surface (when the liver is big enough)."""


class SynthesizeConfig(Section):
    """The synthesize stage: paint random tumors into the normal CT of the training cases."""

    method: Literal["ldm", "handcrafted", "cut"] = "ldm"
    per_case: int = 2
    """Synthetic cases written per training case."""
    sampler: Literal["ddim", "ddpm"] = "ddim"
    """ddim: ``ddim_steps`` deterministic steps; ddpm: all of the schedule's steps (slow, for comparison)."""
    ddim_steps: int = 50
    ddim_eta: float = 0.0
    strength: float = 1.0
    """1: sample from pure noise at T (the paper). Below 1: start at strength·T from the latent of the
    masked CT noised to that level (SDEdit), so that less has to be invented."""
    clip_latent: bool = True
    """Clip the predicted clean latent to the training latents' range at every step."""
    feather_mm: float = 4.0
    """Width of the blend from synthetic to normal CT outside the dilated mask, mm; beyond it the
    normal CT is kept bit-for-bit."""
    texture_sigma_vox: float = 1.0
    """handcrafted: smoothing of the tumor texture noise, voxels."""
    match_noise: bool = True
    """ldm: add back, inside the blended region, the normal CT's noise level (measured in the
    crop's liver), which the autoencoder smooths away."""
    figures: int = 3
    """Synthetic cases shown in report/figures/synthesis_*.png."""
    tumor: TumorMaskConfig = TumorMaskConfig()

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"per_case": 1, "ddim_steps": 3, "figures": 1, "strength": 0.6},
        "demo": {"per_case": 2, "ddim_steps": 10, "strength": 0.6},
        "paper": {"per_case": 5, "ddim_steps": 50},
    }


# --- inpaint (Normal CT Generator) -----------------------------------------------------------
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

    method: Literal["ffc", "median", "mean-fill"] = "ffc"
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
    disc_channels: int = 64
    disc_layers: int = Field(3, ge=1)

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
    """float16 autocast + gradient scaling on CUDA (ignored on CPU)."""
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
        "smoke": {"base_channels": 8, "max_channels": 32, "n_downsampling": 2, "n_blocks": 1, "disc_channels": 8,
                  "disc_layers": 2, "steps": 6, "batch_size": 4, "ema_decay": 0.5, "crop_vox": 32, "log_every_steps": 2,
                  "checkpoint_every_steps": 3, "monitor_slices": 4, "inference_batch_size": 16},
        "demo": {"base_channels": 16, "max_channels": 64, "n_downsampling": 2, "n_blocks": 3, "disc_channels": 16,
                 "disc_layers": 2, "steps": 400, "batch_size": 8, "r1_every_steps": 4, "ema_decay": 0.98, "crop_vox": 64, "lr_generator": 2e-3,
                 "lr_discriminator": 2e-4, "log_every_steps": 25, "checkpoint_every_steps": 100,
                 "monitor_slices": 16, "inference_batch_size": 32},
        "paper": {},
    }


# --- the whole configuration ---------------------------------------------------------------
# The section ``register`` shares its name with ``ABCMeta.register`` (pydantic models are ABCs);
# the field is meant to hide it on ``Config`` instances, so pydantic's warning about it is noise.
warnings.filterwarnings("ignore", message='Field name "register" in "Config" shadows', category=UserWarning)


class Config(Section):
    """The full, resolved configuration of a run."""

    preset: Preset = "paper"
    seed: int = 0
    device: str = "auto"
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    workers: int = Field(default=0, ge=0)
    """Parallel processes for per-case registration; 0: one per core, at most 4 (each holds a case's
    phases in memory; SimpleITK runs one thread in each, see ``register.threads``)."""
    data: DataConfig = DataConfig()
    phantom: PhantomConfig = PhantomConfig()
    preview: PreviewConfig = PreviewConfig()
    register: RegisterConfig = RegisterConfig()
    segment: SegmentConfig = SegmentConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    inpaint: InpaintConfig = InpaintConfig()
    autoencoder: AutoencoderConfig = AutoencoderConfig()
    diffusion: DiffusionConfig = DiffusionConfig()
    synthesize: SynthesizeConfig = SynthesizeConfig()
    translate: TranslateConfig = TranslateConfig()

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"device": "cpu", "workers": 1},
        "demo": {"device": "auto", "workers": 2},
        "paper": {"device": "auto"},
    }


def _preset_overrides(model: type[BaseModel], preset: str) -> dict[str, Any]:
    """Collect the preset's overrides of ``model`` and of its sections, recursively."""
    overrides: dict[str, Any] = copy.deepcopy(getattr(model, "PRESETS", {}).get(preset, {}))
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, Section):
            nested = _preset_overrides(annotation, preset)
            if nested:
                overrides[name] = _deep_merge(nested, overrides.get(name, {}))
    return overrides


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_override(text: str) -> dict[str, Any]:
    """``"segment.epochs=3"`` → ``{"segment": {"epochs": 3}}`` (the value is parsed as YAML)."""
    if "=" not in text:
        raise InputError(f"--set {text!r}: expected key=value, e.g. --set segment.epochs=3")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise InputError(f"--set {text!r}: the key is empty; write section.field=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    result: dict[str, Any] = {}
    node = result
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return result


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a nested dict (``safe_load``: no code in configs)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("config file not found", path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"not valid YAML{where}; fix the syntax", path) from None
    if not isinstance(data, dict):
        raise InputError("a config file must hold a mapping of sections (e.g. 'segment: {epochs: 3}')", path)
    return data


def resolve_config(
    preset: str = "demo",
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    base: dict[str, Any] | None = None,
) -> Config:
    """Build the configuration: defaults → preset → ``base`` → config file → ``--set`` overrides.

    A config file that names a ``preset`` overrides ``preset`` (it comes later in that order): the
    file's preset is applied underneath the file's own values.
    """
    from_file = load_config_file(config_file) if config_file is not None else {}
    if "preset" in from_file:
        preset = str(from_file["preset"])
        if preset not in PRESET_NAMES:
            raise InputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESET_NAMES)}", config_file)
    if preset not in PRESET_NAMES:
        raise InputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESET_NAMES)}")
    values = _preset_overrides(Config, preset)
    values["preset"] = preset
    if base:
        values = _deep_merge(values, base)
    values = _deep_merge(values, from_file)
    for text in overrides:
        values = _deep_merge(values, parse_override(text))
    return validate_config(values, source=str(config_file) if config_file else "--set")


def validate_config(values: dict[str, Any], source: str = "configuration") -> Config:
    """Validate a nested dict into a :class:`Config`; errors become one :class:`InputError` line."""
    try:
        return Config.model_validate(values)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            message = f"unknown setting '{key}'"
        else:
            message = f"setting '{key}': {first['msg']} (got {first.get('input')!r})"
        extra = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise InputError(f"{source}: {message}{extra}; see docs/presets.md for the settings") from None


def config_to_yaml(config: Config) -> str:
    """The configuration as YAML text (tuples as lists), for ``runs/<name>/config.yaml``."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def read_run_config(path: str | Path) -> Config:
    """Load a saved ``config.yaml`` back into a :class:`Config`."""
    return validate_config(load_config_file(path), source=str(path))


def apply_overrides(config: Config, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """``config`` with ``--set section.field=value`` overrides applied (validated again)."""
    values = config.model_dump(mode="json")
    for text in overrides:
        values = _deep_merge(values, parse_override(text))
    return validate_config(values, source="--set")


def setting_choices(setting: str) -> tuple[str, ...]:
    """The values a ``Literal`` setting allows, e.g. ``setting_choices("inpaint.method")``: the one list
    that the CLI's option checks and ``--help`` read."""
    section, field = setting.split(".")
    annotation = Config.model_fields[section].annotation.model_fields[field].annotation
    return tuple(str(value) for value in get_args(annotation))
