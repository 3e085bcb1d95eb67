"""Typed configuration: one frozen section per stage, presets, YAML files and ``--set`` overrides.

Resolution order (later wins): the section defaults (the paper's settings) → the preset
(``smoke``, ``demo`` or ``paper``) → a YAML config file → ``--set key=value`` overrides. The fully
resolved configuration is saved as ``runs/<name>/config.yaml``. Unknown keys are errors.

Each section keeps its own preset overrides in ``PRESETS`` next to its fields, so that the
settings of one stage are read in one place.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

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
        "demo": {"patch_vox": 32, "channels": (16, 32), "num_res_layers": 1, "num_embeddings": 256, "embedding_dim": 8,
                 "batch_size": 4, "steps": 300, "learning_rate": 1e-3, "adversarial_start_step": 150,
                 "discriminator_channels": 8, "discriminator_layers": 2, "save_every_steps": 100, "validation_patches": 8},
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
                 "jitter_vox": 4, "batch_size": 8, "steps": 600, "learning_rate": 1e-3, "save_every_steps": 200},
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

    method: Literal["ldm", "handcrafted"] = "ldm"
    per_case: int = 2
    """Synthetic cases written per training case."""
    sampler: Literal["ddim", "ddpm"] = "ddim"
    """ddim: ``ddim_steps`` deterministic steps; ddpm: all of the schedule's steps (slow, for comparison)."""
    ddim_steps: int = 50
    ddim_eta: float = 0.0
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
        "smoke": {"per_case": 1, "ddim_steps": 3, "figures": 1},
        "demo": {"per_case": 2, "ddim_steps": 10},
        "paper": {"per_case": 5, "ddim_steps": 50},
    }


# --- the whole configuration ---------------------------------------------------------------
class Config(Section):
    """The full, resolved configuration of a run."""

    preset: Preset = "paper"
    seed: int = 0
    device: str = "auto"
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    workers: int = 1
    """Parallel processes for per-case work (registration, inpainting, synthesis, prediction)."""
    data: DataConfig = DataConfig()
    phantom: PhantomConfig = PhantomConfig()
    preview: PreviewConfig = PreviewConfig()
    autoencoder: AutoencoderConfig = AutoencoderConfig()
    diffusion: DiffusionConfig = DiffusionConfig()
    synthesize: SynthesizeConfig = SynthesizeConfig()

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"device": "cpu"},
        "demo": {"device": "auto"},
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
    """Build the configuration: defaults → preset → ``base`` → config file → ``--set`` overrides."""
    if preset not in PRESET_NAMES:
        raise InputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESET_NAMES)}")
    values = _preset_overrides(Config, preset)
    values["preset"] = preset
    if base:
        values = _deep_merge(values, base)
    if config_file is not None:
        from_file = load_config_file(config_file)
        if "preset" in from_file and from_file["preset"] != preset:
            values = _deep_merge(_preset_overrides(Config, str(from_file["preset"])), values)
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
