"""The ``segment`` configuration section (paper step 4, the Multimodal Segmenter)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, TypeAdapter, field_validator, model_validator

from diff4mmlits.settings import Section
from diff4mmlits.synthesize.config import DiffusionMode, PainterMethod

SegmentBackbone = Literal["dynunet", "unet", "attention-unet", "segresnet", "swin-unetr", "vnet"]
SyntheticSource = Literal["none", "offline", "on-the-fly"]
PATCH_DIVISOR: dict[str, int] = {"swin-unetr": 32, "vnet": 16}
"""Backbones whose patch must be a multiple of this along every axis (they pool every axis 5 / 4 times)."""


def backbone_patch_problem(backbone: str, patch: tuple[int, ...] | None) -> str | None:
    """Why ``backbone`` cannot take ``patch`` (voxels, z, y, x), or None: a multiple of its
    :data:`PATCH_DIVISOR` on every axis and twice that on one (a one-voxel bottleneck cannot be
    instance-normalised). Checked on the settings and on a patch the plan derives."""
    factor = PATCH_DIVISOR.get(backbone)
    if not factor or patch is None or (not any(p % factor for p in patch) and max(patch) >= 2 * factor):
        return None
    return (f"backbone {backbone} needs a patch that is a multiple of {factor} along every axis and at least "
            f"{2 * factor} along one, not {list(patch)}; set segment.patch_size_vox (e.g. [{2 * factor}, "
            f"{2 * factor}, {2 * factor}])")

SYNTHETIC_AUGMENTATION_KEYS: tuple[str, ...] = (
    "noise_prob", "noise_std", "grain_noise_prob", "grain_noise_std", "grain_noise_vox", "blur_prob", "blur_sigma_vox",
    "brightness_prob", "brightness_factor", "contrast_prob", "contrast_factor", "low_resolution_prob",
    "low_resolution_zoom", "gamma_prob", "gamma_inverted_prob", "gamma_range",
)
"""The intensity and acquisition augmentation settings that ``segment.synthetic_augmentation`` may set
for the synthetic samples alone (spatial ones and phase dropout stay shared: they change no scanner)."""


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
    synthesis_method: PainterMethod = "ldm"
    """Painter used on the fly (diff4mmlits.synthesize.painters.load_painter's method)."""
    synthesis_mode: DiffusionMode = "profile"
    synthetic_pool: int = Field(16, ge=0)
    """On the fly: synthetic cases kept painted in a pool (0 = paint a new case for every synthetic
    sample, slow); see segment/synthetic_pool.py."""
    synthetic_pool_refresh: int = Field(4, ge=1)
    """On the fly: pool cases replaced per epoch, painted in the background during the epoch before."""
    window_hu: tuple[float, float] = (-21.0, 189.0)
    """Intensity window applied before normalisation, HU (the paper's)."""
    normalization: Literal["auto", "dataset", "case", "none", "liver"] = "auto"
    """z-score after the window: with the training set's liver mean/sd per phase (``dataset``,
    nnU-Net's CT scheme), per case and channel, none, or ``liver``: centred on each case's own liver
    median per phase and scaled by the training livers' sd (segment/inputs.py; needs ``cascade``:
    stage one gives the liver at prediction and is itself normalised by ``dataset``). ``auto``:
    ``liver`` for the cascade's stage two, ``dataset`` for stage one and for a single model."""
    patch_size_vox: tuple[int, int, int] | None = (96, 96, 96)
    """Training patch (z, y, x) in voxels; None lets the plan derive it from spacing and memory budget."""
    memory_budget_mb: float = Field(8000.0, gt=0)
    """Estimated activation memory the plan may use for one training batch, MB."""
    base_filters: int = Field(32, ge=1)
    max_filters: int = Field(320, ge=1)
    max_pooling_steps: int = Field(5, ge=0)
    deep_supervision: bool = True
    cascade: bool = True
    """The liver-region cascade (segment/cascade.py): stage one finds the liver on a coarse grid, stage
    two segments liver and tumor in the liver's bounding box at a fine spacing; false: one model on
    the whole volume at the median spacing."""
    cascade_margin_mm: float = Field(15.0, ge=0)
    """Margin around the liver's bounding box that stage two sees, mm."""
    cascade_liver_max_vox: int = Field(128, ge=8)
    """Stage one's grid: the median image's longest side spans at most this many voxels."""
    cascade_min_tumor_vox: float = Field(4.0, ge=0)
    """Stage two's in-plane spacing makes the training set's small tumors (10th percentile of their
    equivalent diameters) span at least this many voxels (0: the data's own spacing)."""
    cascade_liver_epochs: int | None = Field(None, ge=1)
    """Stage one's epochs (None: ``epochs``); finding the liver needs less training than the tumors."""
    batch_size: int = Field(2, ge=1)
    epochs: int = Field(1000, ge=1)
    steps_per_epoch: int = Field(250, ge=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    learning_rate: float = Field(0.01, gt=0)
    weight_decay: float = Field(3e-5, ge=0)
    poly_power: float = 0.9
    """Poly learning-rate schedule: lr = lr0 · (1 − step/steps)^power."""
    lambda_ce: float = 0.5
    """γ of the paper's loss Dice + γ·CE."""
    batch_dice: bool = True
    """Dice over the whole batch's voxels (nnU-Net's batch Dice); false: one Dice per sample, then
    the mean, so a patch whose tumors are a few voxels weighs as much as one with a large tumor (the
    rule of the per-case Dice the paper reports)."""
    crop_class_ratios: tuple[float, float, float] = (1.0, 1.0, 2.0)
    """Relative chance that a crop is centred on background, liver, tumor."""
    # augmentation: nnU-Net v2's default pipeline and strengths (Isensee et al. 2021), each step a
    # MONAI transform applied with its probability per sample (segment/dataset.py, build_augmentation)
    flip_prob: float = Field(0.5, ge=0, le=1)
    """Mirroring, along each axis."""
    rotate_prob: float = Field(0.2, ge=0, le=1)
    rotate_range_deg: float = 30.0
    """In-plane (axial) rotation, ±degrees (nnU-Net rotates in-plane on anisotropic data)."""
    scale_prob: float = Field(0.2, ge=0, le=1)
    scale_range: tuple[float, float] = (0.7, 1.4)
    """Zoom factor of the spatial scaling."""
    noise_prob: float = Field(0.1, ge=0, le=1)
    noise_std: float = 0.3
    """Largest noise sd (z-score units; nnU-Net's variance up to 0.1); each sample draws an sd below it."""
    blur_prob: float = Field(0.2, ge=0, le=1)
    blur_sigma_vox: tuple[float, float] = (0.5, 1.0)
    """Gaussian blur sigma range, in voxels of the training data's own (median) spacing; on the
    cascade's finer stage-two grid it spans as many mm as on the data's."""
    grain_noise_prob: float = Field(0.0, ge=0, le=1)
    """Noise correlated in-plane, as a reconstruction kernel makes it (segment/augment.py): 0 is off."""
    grain_noise_std: float = 0.5
    """Largest sd of that noise (z-score units)."""
    grain_noise_vox: tuple[float, float] = (0.5, 1.5)
    """Range of its in-plane grain: Gaussian sigma, in voxels of the training data's own (median)
    spacing, as a reconstruction kernel's grain is (about 0.5–1.5 of a scan's pixels)."""
    synthetic_augmentation: dict[str, Any] = {}
    """Augmentation settings that differ for the synthetic samples alone (keys:
    :data:`SYNTHETIC_AUGMENTATION_KEYS`; the rest as for the real samples), e.g. ``{"grain_noise_prob":
    0.6, "grain_noise_std": 1.0}``: painted cases cost nothing to vary, so they can carry other
    scanners' noise, blur and resolution while the real cases stay as scanned (SynthSeg's
    randomised acquisition, applied to the synthetic half only). Measured (docs/segment.md): grain
    on 60 % of the painted samples gave +0.7 ± 1.8 on the second site over plain painting — within
    the spread, so empty by default. Was ``synthetic_grain_noise_prob`` (still read: config.RENAMED)."""
    phase_dropout_prob: float = Field(0.25, ge=0, le=1)
    """Share of samples that lose one or more phases (not all), their channels filled as prediction
    fills a study's missing phases (segment/augment.py); 0 is off. On the phantom (five seeds) it
    costs nothing measurable on four-phase studies (−0.9 ± 2.3 per-case tumor Dice) and doubles the
    Dice on PVP-only studies (6.5 → 13.7 %, liver 76 → 91 %): a study with missing phases no
    longer breaks the model. Models saved before it existed read as 0."""
    brightness_prob: float = Field(0.15, ge=0, le=1)
    brightness_factor: float = 0.25
    """Multiplicative brightness: intensities × (1 ± factor)."""
    contrast_prob: float = Field(0.15, ge=0, le=1)
    contrast_factor: float = 0.25
    """Contrast: spread around the mean × (1 ± factor), range preserved."""
    intensity_per_channel: bool = True
    """Brightness and contrast drawn for each phase on its own (nnU-Net's unsynchronised channels):
    a phase imaged earlier or later than in training brightens or darkens alone."""
    low_resolution_prob: float = Field(0.25, ge=0, le=1)
    low_resolution_zoom: tuple[float, float] = (0.5, 1.0)
    """Simulated low resolution: down-sampled by this zoom, then back up."""
    gamma_prob: float = Field(0.3, ge=0, le=1)
    gamma_inverted_prob: float = Field(0.1, ge=0, le=1)
    gamma_range: tuple[float, float] = (0.7, 1.5)
    validate_every_epochs: int = Field(1, ge=1)
    sliding_window_overlap: float = Field(0.5, ge=0, lt=1)
    sliding_window_batch: int = Field(2, ge=1)
    tta: bool = False
    """Test-time flips along every axis (8 predictions averaged)."""
    min_tumor_volume_mm3: float = Field(0.0, ge=0)
    """Predicted tumor components smaller than this are removed (0 keeps all)."""
    loader_workers: int | None = Field(default=None, ge=0)
    """DataLoader worker processes (0 loads in the training process). Unset: on a GPU, this process's
    share of the cores less one, at most 12 (nnU-Net's default; with 2 the paper preset's H200 run
    waited for data 75 % of the time); on a CPU 2 (training takes the cores)."""
    mixed_precision: bool = True
    """Mixed precision: bfloat16 on CUDA (float16 where bf16 is missing) and on a CPU that computes
    bfloat16 in hardware (AVX512-BF16 or AMX: 1.6× faster training steps); float32 on other CPUs."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "patch_size_vox": (16, 16, 16), "base_filters": 4, "max_filters": 16, "max_pooling_steps": 2,
            "deep_supervision": False, "batch_size": 2, "epochs": 2, "steps_per_epoch": 3,
            "optimizer": "adamw", "learning_rate": 3e-3, "rotate_prob": 0.0, "scale_prob": 0.0, "loader_workers": 0,
            "sliding_window_overlap": 0.25,
        },
        "demo": {
            "patch_size_vox": None, "memory_budget_mb": 80.0, "base_filters": 8, "max_filters": 64,
            "max_pooling_steps": 4, "deep_supervision": True, "batch_size": 2, "epochs": 10,
            "steps_per_epoch": 20, "optimizer": "adamw", "learning_rate": 1e-2,
            "loader_workers": 0, "sliding_window_overlap": 0.25, "cascade_liver_epochs": 3,
            # the synthesize stage's cases (RUN/synthetic/): diffusion sampling inside the loader
            # would cost more than the whole training budget on a 2-core CPU
            "synthetic": "offline",
        },
        "bench": {
            # benchmarks/bench_segment.py: long enough that seeds do not swamp the effects
            # (12–16 minutes per model on one core at phantom size 48)
            "epochs": 30, "steps_per_epoch": 50, "cascade_liver_epochs": 10,
        },
        "paper": {},
    }

    @field_validator("phases", mode="before")
    @classmethod
    def _parse_phases(cls, value: Any) -> tuple[str, ...]:
        from diff4mmlits import PHASES

        names = [p.strip() for p in value.split(",")] if isinstance(value, str) else list(value)
        names = [n.upper() if isinstance(n, str) else n for n in names]  # pvp, as phase file names are read
        unknown = [n for n in names if n not in PHASES]
        if not names or unknown:
            raise ValueError(f"phases must be a non-empty subset of {','.join(PHASES)}")
        return tuple(p for p in PHASES if p in names)

    @field_validator("synthetic_augmentation")
    @classmethod
    def _check_synthetic_augmentation(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(SYNTHETIC_AUGMENTATION_KEYS))
        if unknown:
            raise ValueError(f"synthetic_augmentation: {unknown} are not augmentation settings "
                             f"({', '.join(SYNTHETIC_AUGMENTATION_KEYS)})")
        # each value checked (and converted, e.g. a list to a tuple) as its own setting is
        return {key: TypeAdapter(cls.model_fields[key].annotation).validate_python(item) for key, item in value.items()}

    def synthetic_sample_config(self) -> SegmentConfig:
        """These settings with :attr:`synthetic_augmentation` applied: the synthetic samples' augmentation
        (validated, so a wrong value fails as any setting does)."""
        if not self.synthetic_augmentation:
            return self
        return type(self).model_validate(self.model_dump() | self.synthetic_augmentation | {"synthetic_augmentation": {}})

    @field_validator("window_hu")
    @classmethod
    def _check_window(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not value[0] < value[1]:
            raise ValueError(f"window_hu {list(value)}: give [low, high] with low < high (HU)")
        return value

    @field_validator("patch_size_vox")
    @classmethod
    def _check_patch(cls, value: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        if value is not None and min(value) < 2:
            raise ValueError(f"patch_size_vox {list(value)}: every axis needs at least 2 voxels")
        return value

    @model_validator(mode="after")
    def _check_backbone_patch(self) -> SegmentConfig:
        """A backbone that pools every axis ``factor``× needs a patch it divides; checked here so that a
        command stops on it before clearing a finished stage's stamp (networks.py checks a derived patch)."""
        problem = backbone_patch_problem(self.backbone, self.patch_size_vox)
        if problem:
            raise ValueError(problem)
        return self

    @field_validator("synthetic_ratio")
    @classmethod
    def _check_ratio(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise ValueError("synthetic_ratio is a share of samples, between 0 and 1")
        return value
