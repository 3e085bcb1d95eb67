"""The configuration sections of the Multimodal CT Synthesizer (paper step 3): the autoencoder,
the latent diffusion model, the random tumor masks and synthesis."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from diff4mmlits.settings import Section

DiffusionMode = Literal["paper", "profile", "joint"]
"""paper: the phases denoised one by one from one mask and noise (the paper); profile: the same, each
phase also conditioned on the tumor's enhancement in that phase (issue 14); joint: all phases at once,
conditioned on the whole enhancement profile."""
PainterMethod = Literal["ldm", "handcrafted", "cut"]
"""Who paints the tumors: latent diffusion (the paper), the rule-based baseline, or CUT (Table V)."""


class AutoencoderConfig(Section):
    """The VQGAN-style autoencoder of the Multimodal CT Synthesizer (paper §III-B): MONAI VQVAE, 3D.

    One autoencoder for every phase (a single-channel network fed one phase at a time), trained on
    normal-CT patches; HU window ``window_hu`` → [-1, 1].
    """

    window_hu: tuple[float, float] = (-175.0, 250.0)
    """HU mapped to [-1, 1] (values outside are clipped)."""
    patch_vox: int = Field(96, ge=8)
    """Cubic training patch edge, voxels (divisible by 2**len(channels))."""
    channels: tuple[int, ...] = (64, 128)
    """Channels per encoder level; each level halves the grid (96³ → 24³ with two levels)."""
    num_res_layers: int = Field(2, ge=1)
    num_embeddings: int = Field(1024, ge=2)
    """Codebook size of the vector quantizer."""
    restart_dead_codes_every: int = Field(20, ge=0)
    """Every so many steps, codebook entries that no latent uses are moved onto encoder outputs (0 = never)."""
    embedding_dim: int = Field(8, ge=1)
    """Latent channels (the diffusion model works on these)."""
    batch_size: int = Field(2, ge=1)
    steps: int = Field(20000, ge=0)
    learning_rate: float = Field(1e-4, gt=0)
    liver_patch_fraction: float = Field(0.8, ge=0, le=1)
    """Share of training patches centred on a liver voxel (the rest anywhere in the body)."""
    tumor_patch_fraction: float = Field(0.25, ge=0, le=1)
    """Share of training patches taken around the real tumors of the registered training cases
    instead of the normal CT (0 = normal CT only). An autoencoder that never saw a tumor cannot
    decode one: the paper adapts a pretrained autoencoder that had."""
    adversarial_weight: float = Field(0.01, ge=0)
    """Weight of the PatchDiscriminator's least-squares adversarial loss (0 turns it off)."""
    adversarial_start_step: int = Field(2000, ge=0)
    """Adversarial loss off before this step (the reconstruction settles first)."""
    discriminator_channels: int = Field(32, ge=1)
    discriminator_layers: int = Field(3, ge=1)
    perceptual_weight: float = Field(0.0, ge=0)
    """MONAI PerceptualLoss weight; off by default because it downloads pretrained weights."""
    checkpoint_every_steps: int = Field(1000, ge=1)
    validation_patches: int = Field(32, ge=1)
    """Held-out patches (validation cases) for the reconstruction MAE (HU, liver)."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"patch_vox": 16, "channels": (8, 16), "num_res_layers": 1, "num_embeddings": 32, "embedding_dim": 4,
                  "batch_size": 4, "steps": 6, "learning_rate": 3e-3, "adversarial_start_step": 3,
                  "discriminator_channels": 4, "discriminator_layers": 1, "checkpoint_every_steps": 3, "validation_patches": 2,
                  "restart_dead_codes_every": 3},
        "demo": {"patch_vox": 24, "channels": (16, 32), "num_res_layers": 1, "num_embeddings": 256, "embedding_dim": 8,
                 "batch_size": 4, "steps": 450, "learning_rate": 1e-3, "adversarial_start_step": 225,
                 "discriminator_channels": 8, "discriminator_layers": 2, "checkpoint_every_steps": 150, "validation_patches": 8},
        "paper": {},
    }


class DiffusionConfig(Section):
    """The tumor synthesizer: MONAI DiffusionModelUNet in the autoencoder's latent space (paper Eq. 3).

    Trained with a DDPM noise schedule on crops around the real tumors of the registered training
    cases (every phase), conditioned by concatenating the dilated tumor mask (on the latent grid)
    and the latent of the masked CT.
    """

    mode: DiffusionMode = "profile"
    """paper: one network, the phase as a class embedding; phases are synthesized one by one from
    the same mask and the same initial noise (the paper; kept for the ablation). profile: as paper,
    plus a condition channel with the tumor-to-liver contrast of that phase inside the mask, so one
    mask gets one coherent kind over all phases. joint: the latents of all phases are denoised
    together as one multi-channel latent (the paper's "all-in-one" future direction), conditioned on
    the whole profile."""
    crop_vox: int = Field(96, ge=8)
    """Cubic crop edge around a tumor, voxels (the autoencoder maps it to crop/4 latent voxels)."""
    channels: tuple[int, ...] = (128, 256, 256)
    attention_levels: tuple[bool, ...] = (False, True, True)
    num_res_blocks: int = Field(2, ge=1)
    norm_num_groups: int = Field(32, ge=1)
    num_head_channels: int = Field(32, ge=1)
    num_train_timesteps: int = Field(1000, ge=1)
    schedule: Literal["linear_beta", "scaled_linear_beta", "cosine"] = "scaled_linear_beta"
    beta_start: float = Field(0.0015, gt=0, lt=1)
    beta_end: float = Field(0.0195, gt=0, lt=1)
    crops_per_tumor: int = Field(8, ge=1)
    """Jittered, randomly flipped crops per real tumor (their latents are computed once)."""
    jitter_vox: int = Field(8, ge=0)
    """Largest shift of a crop's centre from the tumor's centre, voxels."""
    batch_size: int = Field(8, ge=1)
    steps: int = Field(30000, ge=0)
    learning_rate: float = Field(1e-4, gt=0)
    tumor_loss_weight: float = 1.0
    """Adds the MSE inside the tumor mask again with this weight (0 = the paper's Eq. 3 exactly). The
    tumor is a few latent voxels of the crop; without it the network learns the background first."""
    checkpoint_every_steps: int = Field(1000, ge=1)

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"crop_vox": 16, "channels": (8, 16), "attention_levels": (False, False), "num_res_blocks": 1,
                  "norm_num_groups": 4, "num_head_channels": 4, "num_train_timesteps": 100, "crops_per_tumor": 2,
                  "jitter_vox": 2, "batch_size": 4, "steps": 6, "learning_rate": 1e-3, "checkpoint_every_steps": 3},
        "demo": {"crop_vox": 32, "channels": (32, 64), "attention_levels": (False, True), "num_res_blocks": 1,
                 "norm_num_groups": 8, "num_head_channels": 16, "num_train_timesteps": 1000, "crops_per_tumor": 6,
                 "jitter_vox": 4, "batch_size": 8, "steps": 400, "learning_rate": 1e-3, "checkpoint_every_steps": 200},
        "paper": {},
    }


class TumorMaskConfig(Section):
    """Random tumor masks (paper §III-B): ellipsoid, elastic deformation, inside the liver.

    ``source = "dataset"`` draws count, size and elongation from the real tumors of the training
    split (measured, with a jitter); ``classes`` uses the fixed size classes below.
    """

    source: Literal["dataset", "classes"] = "dataset"
    """Where tumor counts and shapes come from: the training split's real tumors, or the size classes."""
    size_jitter: float = 0.15
    """dataset: log-normal jitter of each drawn semi-axis (standard deviation of its log)."""
    max_tumors_per_case: int = Field(6, ge=1)
    """dataset: at most this many tumors in one synthetic case."""
    size_emphasis: float = Field(default=0.0, ge=0.0)
    """dataset: a real tumor is drawn as a shape with weight ``voxels ** -size_emphasis``: 0 keeps
    the dataset's size distribution; 1 draws a tumor ten times smaller ten times as often (more
    practice on the small tumors a segmenter misses, as DiffTumor's early-tumor synthesis does);
    its profile and edge come with it."""
    profile_from: Literal["shape", "any"] = "shape"
    """dataset: a tumor's enhancement profile and edge come from the real tumor whose shape was drawn
    (``shape``: kind and size stay together), or from another real tumor drawn on its own (``any``:
    every kind at every size, e.g. a small tumor dark in every phase where the training split has
    such kinds only large)."""
    profile_jitter: float = 0.15
    """Jitter of a drawn enhancement profile, as a share of each phase's spread over the real tumors."""
    vessel_margin_mm: float = 3.0
    """Tumor centres stay this far from the liver's large vessels (0 = anywhere in the liver)."""

    size_classes_mm: dict[str, tuple[float, float]] = {
        "tiny": (2.0, 5.0), "small": (5.0, 10.0), "medium": (10.0, 20.0), "large": (20.0, 30.0)}
    """Range of each semi-axis per size class, mm."""
    size_class_weights: dict[str, float] = {"tiny": 0.25, "small": 0.35, "medium": 0.3, "large": 0.1}
    tumors_per_case: tuple[int, int] = (1, 3)
    """classes: smallest and largest number of tumors painted into one case."""
    elastic_amplitude: float = 0.2
    """Elastic displacement, standard deviation as a share of the tumor's mean semi-axis."""
    elastic_smoothness: float = 0.5
    """Gaussian smoothing of the elastic field, as a share of the mean semi-axis."""
    erode_liver_mm: float = 5.0
    """Tumor centres lie this far inside the liver surface (when the liver is big enough)."""
    depth_factor: float = 1.0
    """A tumor's centre lies at least this many times its mean semi-axis inside the liver surface
    (where the liver allows), so that the liver surface does not cut the tumor: with centres
    anywhere, the liver kept 0.84 of the drawn tumors' voxels on the phantom (docs/synthesize.md,
    "Sizes"). 0: anywhere past ``erode_liver_mm``."""


class SynthesizeConfig(Section):
    """The synthesize stage: paint random tumors into the normal CT of the training cases."""

    method: PainterMethod = "ldm"
    per_case: int = Field(2, ge=0)
    """Synthetic cases written per training case."""
    sampler: Literal["ddim", "ddpm"] = "ddim"
    """ddim: ``ddim_steps`` deterministic steps; ddpm: all of the schedule's steps (slow, for comparison)."""
    ddim_steps: int = Field(50, ge=1)
    ddim_eta: float = Field(0.0, ge=0)
    strength: float = Field(1.0, ge=0, le=1)
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
    noise_texture: Literal["white", "scan"] = "white"
    """ldm, with ``match_noise``: the noise added back is white (``white``), or the normal CT's own
    fine residual at the same voxels (``scan``: the crop minus its 1-voxel Gaussian blur, scaled to
    the missing level), so the tumor carries the scan's grain and noise pattern."""
    tumor_noise: Literal["liver", "real"] = "real"
    """ldm, with ``match_noise``: the voxel noise inside a painted tumor — the real tumors' own level
    relative to their liver, per phase (``real``: measured on the registered training tumors; this
    phantom's tumors are smoother than its liver, NC 8.0 against ~12 HU) or the liver's (``liver``:
    the noise added back covers the crop, tumor included; the cascade then found fewer real tumors,
    sensitivity 21.0 % against 30.2 % with ``real``, docs/synthesize.md)."""
    calibrate_contrast: bool = True
    """ldm: after decoding, shift each phase inside the tumor so that its contrast to the liver ring
    equals the drawn enhancement profile (the network paints texture, edge and shape; the profile
    fixes the mean). Off for the paper-mode ablation."""
    calibrate_edge: bool = True
    """ldm with ``calibrate_contrast``, and handcrafted: also give the tumor's outermost voxel layer and the liver
    layer just outside it the share of the contrast that the real tumor its profile was drawn from
    shows there (:func:`~diff4mmlits.synthesize.contrast.edge_fraction`), so that a painted lesion
    ends where its label does, as the dataset's own tumors do (docs/synthesize.md, "Edges")."""
    profile_hu: dict[str, float] | None = None
    """One enhancement profile (phase → tumor − liver, HU) for every tumor instead of drawing real
    tumors' profiles, e.g. {"NC": -10, "AP": 40, "PVP": -5, "DP": -20} for a hyper-enhancing lesion."""
    quality_control: bool = True
    """Check every painted tumor (contrast within the real range, no seam) and paint it again when it fails."""
    quality_contrast_margin: float = 0.5
    """The allowed contrast range: the real tumors' [min, max] per phase widened by this share of their
    spread (at least 10 HU)."""
    quality_seam_hu: float = 10.0
    """The largest mean offset (HU) the painting may leave in the liver of the feathered band."""
    quality_retries: int = Field(2, ge=0)
    """A rejected tumor is painted again this many times, then left out."""
    match_background: bool = True
    """ldm: shift each decoded phase by the median difference to the normal CT in the crop's liver away
    from the tumor, so the blend leaves no halo (the autoencoder's reconstruction can sit a few HU off)."""
    figures: int = Field(3, ge=0)
    """Synthetic cases shown in report/figures/synthesis_*.png."""
    tumor: TumorMaskConfig = TumorMaskConfig()

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"per_case": 1, "ddim_steps": 3, "figures": 1, "strength": 0.6},
        "demo": {"per_case": 2, "ddim_steps": 10, "strength": 0.6},
        "paper": {"per_case": 5, "ddim_steps": 50},
    }
