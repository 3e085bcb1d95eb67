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
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
                 "disc_layers": 2, "steps": 600, "batch_size": 8, "r1_every_steps": 4, "ema_decay": 0.98, "crop_vox": 64, "lr_generator": 2e-3,
                 "lr_discriminator": 2e-4, "log_every_steps": 25, "checkpoint_every_steps": 100,
                 "monitor_slices": 16, "inference_batch_size": 32},
        "paper": {},
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
    inpaint: InpaintConfig = InpaintConfig()

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
