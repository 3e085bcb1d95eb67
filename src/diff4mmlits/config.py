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


# --- the whole configuration -------------------------------------------------------------------
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
    translate: TranslateConfig = TranslateConfig()

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
