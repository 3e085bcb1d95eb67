"""Typed configuration: one frozen section per stage, presets, YAML files and ``--set`` overrides.

Resolution order (later wins): the section defaults (the paper's settings) → the preset
(``smoke``, ``demo`` or ``paper``) → a YAML config file → ``--set key=value`` overrides. The fully
resolved configuration is saved as ``runs/<name>/config.yaml``. Unknown keys are errors.

Each stage keeps its section, with its preset overrides in ``PRESETS`` next to its fields, in its
own package (``register/config.py``, ``inpaint/config.py``…), so that the settings of one stage are
read in one place; this module composes them in the paper's order and resolves presets, files and
overrides. Settings renamed since an earlier version are still accepted under their old names
(:data:`RENAMED`), with a log line.
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import yaml
from pydantic import BaseModel, Field, ValidationError

from diff4mmlits.data.config import DataConfig, PhantomConfig, PreviewConfig
from diff4mmlits.errors import InputError
from diff4mmlits.evaluate.config import EvaluateConfig
from diff4mmlits.inpaint.config import InpaintConfig
from diff4mmlits.register.config import RegisterConfig
from diff4mmlits.segment.config import SegmentBackbone, SegmentConfig, SyntheticSource
from diff4mmlits.settings import Section
from diff4mmlits.synthesize.config import AutoencoderConfig, DiffusionConfig, SynthesizeConfig, TumorMaskConfig
from diff4mmlits.translate.config import TranslateConfig

__all__ = [
    "AutoencoderConfig", "Config", "DataConfig", "DiffusionConfig", "EvaluateConfig", "InpaintConfig", "PhantomConfig",
    "PreviewConfig", "RegisterConfig", "Section", "SegmentBackbone", "SegmentConfig", "SynthesizeConfig",
    "SyntheticSource", "TranslateConfig", "TumorMaskConfig", "apply_overrides", "config_to_yaml", "parse_override",
    "read_run_config", "rename_old_settings", "resolve_config", "setting_choices", "validate_config",
]

log = logging.getLogger(__name__)

RENAMED: dict[str, str] = {
    "autoencoder.save_every_steps": "autoencoder.checkpoint_every_steps",
    "diffusion.save_every_steps": "diffusion.checkpoint_every_steps",
    "translate.checkpoint_every": "translate.checkpoint_every_steps",
    "translate.log_every": "translate.log_every_steps",
    "translate.discriminator_filters": "translate.discriminator_channels",
    "inpaint.disc_channels": "inpaint.discriminator_channels",
    "inpaint.disc_layers": "inpaint.discriminator_layers",
    "segment.amp": "segment.mixed_precision",
    "segment.intensity_prob": "segment.brightness_prob",
    "segment.intensity_scale": "segment.brightness_factor",
    # the paper's one mask preparation (§III-A) serves the inpainter and the synthesizer alike
    "diffusion.close_kernel_vox": "inpaint.close_kernel_vox",
    "diffusion.dilate_kernel_vox": "inpaint.dilate_kernel_vox",
    # one setting for any augmentation of the synthetic samples alone (a key of a dict setting)
    "segment.synthetic_grain_noise_prob": "segment.synthetic_augmentation.grain_noise_prob",
}
"""Old setting name → its name now; old names in config files and ``--set`` still work."""


def rename_old_settings(values: dict[str, Any], source: str) -> dict[str, Any]:
    """``values`` (nested sections: a config file, ``--set``, or the settings a model folder saved)
    with settings under old names moved to their new names. A new name may be a key of a dict
    setting (``section.field.key``); an old value of None there meant "unset" and is dropped."""
    values = copy.deepcopy(values)
    for old, new in RENAMED.items():
        old_section, old_key = old.split(".")
        section = values.get(old_section)
        if not (isinstance(section, dict) and old_key in section):
            continue
        value = section.pop(old_key)
        *path, new_key = new.split(".")
        target: Any = values
        for part in path:
            if isinstance(target, dict):
                target = target.setdefault(part, {})
        if isinstance(target, dict) and not (len(path) > 1 and value is None):
            target[new_key] = value
            log.info("%s: setting %s is now called %s", source, old, new)
    return values


PRESET_NAMES: tuple[str, ...] = ("smoke", "demo", "bench", "paper")
Preset = Literal["smoke", "demo", "bench", "paper"]
PRESET_BASES: dict[str, str] = {"bench": "demo"}
"""A preset built on another: ``bench`` is the demo with training long enough for benchmarks
(seeds do not swamp the effects); only what differs is written under ``bench``."""


# --- the whole configuration ---------------------------------------------------------------
# The section ``register`` shares its name with ``ABCMeta.register`` (pydantic models are ABCs);
# the field is meant to hide it on ``Config`` instances, so pydantic's warning about it is noise.
warnings.filterwarnings("ignore", message='Field name "register" in "Config" shadows', category=UserWarning)


class Config(Section):
    """The full, resolved configuration of a run."""

    preset: Preset = "paper"
    seed: int = Field(default=0, ge=0)
    """The run's seed (NumPy and torch seed streams take non-negative integers)."""
    device: str = "auto"
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    workers: int = Field(default=0, ge=0)
    """Parallel processes for per-case registration; 0: the thread budget (``--threads``; by default
    the cores not busy with other work), at most 4 or as many as the available memory holds at 3 GiB
    each (each holds a case's phases in memory; SimpleITK runs one thread in each, see ``register.threads``)."""
    # in the paper's order: the data, 1. register, 2. inpaint, 3. synthesize, 4. segment, 5. evaluate
    data: DataConfig = DataConfig()
    phantom: PhantomConfig = PhantomConfig()
    preview: PreviewConfig = PreviewConfig()
    register: RegisterConfig = RegisterConfig()
    inpaint: InpaintConfig = InpaintConfig()
    autoencoder: AutoencoderConfig = AutoencoderConfig()
    diffusion: DiffusionConfig = DiffusionConfig()
    synthesize: SynthesizeConfig = SynthesizeConfig()
    segment: SegmentConfig = SegmentConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    translate: TranslateConfig = TranslateConfig()

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"device": "cpu", "workers": 1},
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


def _preset_values(preset: str) -> dict[str, Any]:
    """Every section's overrides of ``preset``, on top of those of the preset it is built on."""
    values = _preset_overrides(Config, preset)
    base = PRESET_BASES.get(preset)
    return _deep_merge(_preset_values(base), values) if base is not None else values


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
    return rename_old_settings(result, "--set")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a nested dict (``safe_load``: no code in configs)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("is a folder, not a config file" if path.is_dir() else "config file not found", path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:  # a UTF-16 file from a Windows editor, or a binary file given by mistake
        raise InputError("is not UTF-8 text; save it as UTF-8 (plain YAML)", path) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"not valid YAML{where}; fix the syntax", path) from None
    if not isinstance(data, dict):
        raise InputError("a config file must hold a mapping of sections (e.g. 'segment: {epochs: 3}')", path)
    return rename_old_settings(data, str(path))


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
    values = _preset_values(preset)
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
        elif first["type"] == "value_error" and len(first["loc"]) == 1:  # a check across a section's settings
            message = f"section '{key}': {first['msg'].removeprefix('Value error, ')}"
        else:
            message = f"setting '{key}': {first['msg'].removeprefix('Value error, ')} (got {first.get('input')!r})"
        extra = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise InputError(f"{source}: {message}{extra}; see docs/presets.md for the settings") from None


def config_to_yaml(config: Config) -> str:
    """The configuration as YAML text (tuples as lists), for ``runs/<name>/config.yaml``."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def read_run_config(path: str | Path) -> Config:
    """Load a saved ``config.yaml`` back into a :class:`Config` (a saved one holds every section: an
    empty file is damaged, not the defaults)."""
    values = load_config_file(path)
    if not values:
        raise InputError("is empty, not a saved configuration (damaged?); write it again with 'diff4mmlits run "
                         "DATASET --run RUN' and the preset and settings the run was made with", path)
    return validate_config(values, source=str(path))


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
