"""Slice-wise inference of a trained translator: load its model folder, translate arrays, volumes, cases.

A translator's model folder (``RUN/models/translator-<method>/``, written by
:mod:`diff4mmlits.translate.train`) holds ``config.json`` and ``weights.safetensors`` (the source →
target generator); that is all inference needs. Arrays are ``(C, Z, Y, X)`` in [-1, 1]; volumes
and cases are in their modality's units (HU for CT), mapped by the folder's intensity maps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from diff4mmlits.checkpoint import WEIGHTS_NAME, load_weights, model_config_errors, read_model_config
from diff4mmlits.data.case import Case
from diff4mmlits.data.intensity import IntensityMap
from diff4mmlits.data.volume import Volume, require_same_grid
from diff4mmlits.distributed import resolve_device
from diff4mmlits.errors import InputError
from diff4mmlits.translate.base import TranslationModel
from diff4mmlits.translate.config import TranslateConfig
from diff4mmlits.translate.networks import ResnetGenerator


@dataclass
class Translator:
    """A trained source → target generator with its intensity maps (from a model folder)."""

    generator: ResnetGenerator
    source_map: IntensityMap
    target_map: IntensityMap
    source_phase: str
    target_phase: str
    spatial_dims: int
    crop_vox: int
    batch_slices: int
    condition_channels: int
    device: torch.device
    config: dict[str, Any]


class TranslationPair(Protocol):
    """What a translator needs to know of its training data (a :class:`~diff4mmlits.translate.train.TranslatorData`)."""

    source_map: IntensityMap
    target_map: IntensityMap
    source_phase: str
    target_phase: str
    condition_channels: int


def translator_from_model(model: TranslationModel, data: TranslationPair, config: TranslateConfig, device: torch.device | None = None) -> Translator:
    """A :class:`Translator` around an in-memory model (benchmarks and tests)."""
    generator = model.generator
    assert isinstance(generator, ResnetGenerator)
    return Translator(generator, data.source_map, data.target_map, data.source_phase, data.target_phase, config.spatial_dims,
                      config.crop_vox, config.translate_batch_slices, data.condition_channels,
                      device or next(generator.parameters()).device, {"method": config.method})


def load_translator(folder: str | Path, device: str = "cpu") -> Translator:
    """Load a translator's model folder (``config.json`` + ``weights.safetensors``, safely)."""
    folder = Path(folder)
    config = read_model_config(folder)
    if config.get("kind") != "translator":
        raise InputError(f"not a translator model folder (kind {config.get('kind')!r}); give the folder train-translator wrote", folder)
    with model_config_errors(folder):
        generator = ResnetGenerator(**config["generator"])
        settings = config.get("settings", {})
        fields = {
            "source_map": IntensityMap.from_dict(config["source_intensity"]),
            "target_map": IntensityMap.from_dict(config["target_intensity"]),
            "source_phase": config["source_phase"],
            "target_phase": config["target_phase"],
            "spatial_dims": int(config["generator"]["spatial_dims"]),
            "crop_vox": int(settings.get("crop_vox", 64)),
            "batch_slices": int(settings.get("translate_batch_slices", 16)),
            "condition_channels": int(config.get("condition_channels", 0)),
        }
    load_weights(generator, folder / WEIGHTS_NAME)
    resolved = resolve_device(device)
    generator.to(resolved).eval()
    return Translator(
        generator=generator,
        **fields,
        device=resolved,
        config=config,
    )


@torch.no_grad()
def translate_array(unit: np.ndarray, translator: Translator, on_chunk: Callable[[int], None] | None = None) -> np.ndarray:
    """``(C_in, Z, Y, X)`` in [-1, 1] → ``(C_out, Z, Y, X)`` in [-1, 1].

    2D models run slice by slice along z (``batch_slices`` at a time), each slice padded by edge
    replication to a multiple of 4; 3D models run MONAI's sliding-window inference with
    ``crop_vox``³ windows and Gaussian blending.
    """
    generator = translator.generator
    was_training = generator.training
    generator.eval()
    tensor = torch.from_numpy(np.ascontiguousarray(unit, dtype=np.float32))
    multiple = generator.size_multiple
    try:
        if translator.spatial_dims == 3:
            from monai.inferers import sliding_window_inference

            roi = tuple(min(translator.crop_vox, _round_up(s, multiple)) for s in tensor.shape[1:])
            padded, crop = _pad_to_multiple(tensor[None], multiple, spatial=3)
            out = sliding_window_inference(padded.to(translator.device), roi, 1, generator, overlap=0.25, mode="gaussian",
                                           padding_mode="replicate")
            return out[(0, slice(None), *crop)].cpu().numpy().astype(np.float32)
        slices = tensor.permute(1, 0, 2, 3)  # (Z, C, Y, X)
        padded, crop = _pad_to_multiple(slices, multiple, spatial=2)
        outputs = []
        for start in range(0, padded.shape[0], max(1, translator.batch_slices)):
            chunk = padded[start:start + translator.batch_slices].to(translator.device)
            outputs.append(generator(chunk)[(slice(None), slice(None), *crop)].cpu())
            if on_chunk is not None:
                on_chunk(chunk.shape[0])
        return torch.cat(outputs, 0).permute(1, 0, 2, 3).numpy().astype(np.float32)
    finally:
        generator.train(was_training)


def _round_up(size: int, multiple: int) -> int:
    return -(-size // multiple) * multiple


def _pad_to_multiple(tensor: torch.Tensor, multiple: int, spatial: int) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Pad the last ``spatial`` axes by edge replication up to a multiple; return the crop that undoes it."""
    sizes = tensor.shape[-spatial:]
    before_after = [((_round_up(s, multiple) - s) // 2, (_round_up(s, multiple) - s + 1) // 2) for s in sizes]
    crop = tuple(slice(before, before + size) for (before, _), size in zip(before_after, sizes))
    pads = [p for pair in reversed(before_after) for p in pair]  # F.pad: last axis first
    if any(pads):
        tensor = torch.nn.functional.pad(tensor, pads, mode="replicate")
    return tensor, crop


def translate_volume(volume: Volume, translator: Translator) -> Volume:
    """Translate one source volume (HU for CT) into target units; same grid, same geometry."""
    unit = translator.source_map.to_unit(volume.array)[None]
    out = translate_array(unit, translator)
    return volume.with_array(translator.target_map.from_unit(out[0]), kind="image")


def translate_case(case: Case, translator: Translator) -> Case:
    """The case's source phase translated, stored as the target phase; label and geometry unchanged.

    The output holds one phase (``target_phase``) and the source label as it was, so the
    segmenter can train on it directly.
    """
    if translator.condition_channels:
        raise InputError("this model paints tumors into a masked CT (a CUT tumor painter); use 'synthesize --method cut'")
    if translator.source_phase not in case.phases:
        raise InputError(
            f"{case.case_id}: phase {translator.source_phase} (the one this translator was trained on) is missing; "
            f"present: {', '.join(case.phase_names)}"
        )
    source = case.phases[translator.source_phase]
    if case.label is not None:
        require_same_grid(source, case.label, what=f"{case.case_id}/label vs {translator.source_phase}",
                          hint="translate the annotated phase or register the case first")
    translated = translate_volume(source, translator)
    return Case(case_id=case.case_id, phases={translator.target_phase: translated}, label=case.label,
                annotated_phase=translator.target_phase)


def complete_missing_phase(case: Case, translator: Translator) -> Case:
    """Add the translator's target phase, made from its source phase, to a case that lacks it.

    An alternative to the paper's rule of duplicating a present phase into a missing one: a
    translator trained from one phase to another (e.g. PVP → AP) fills the gap. Every phase that
    is present, the label and the geometry stay as they are; the new phase lies on the source
    phase's grid. Cases that already hold the target phase are returned unchanged.
    """
    if translator.target_phase in case.phases:
        return case
    if translator.source_phase not in case.phases:
        raise InputError(
            f"{case.case_id}: cannot make {translator.target_phase} from {translator.source_phase}, which is missing too"
        )
    made = translate_volume(case.phases[translator.source_phase], translator)
    phases = {**case.phases, translator.target_phase: made}
    return Case(case_id=case.case_id, phases=phases, label=case.label, annotated_phase=case.annotated_phase, extras=case.extras)
