"""The training loop every translation method shares and its checkpoints (inference: :mod:`diff4mmlits.translate.translator`).

A translator's model folder (``RUN/models/translator-<method>/``)::

    config.json             method, generator architecture, intensity maps, phases, all settings
    weights.safetensors     the source → target generator (all that ``translate`` needs)
    networks.safetensors    every network of the method (generators, discriminators, heads), for resume
    training_state.pt       optimisers, schedulers, step, sampler RNG state, image pools, log rows (weights_only)
    log.csv, curves.png     the losses every ``log_every`` steps, and their plot

Training runs under ``torchrun`` too (gradients averaged over processes, see ``base``); only rank 0
writes. ``--resume`` continues from ``training_state.pt`` with the same batches it would have drawn.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diff4mmlits import __version__
from diff4mmlits.checkpoint import (
    load_training_state,
    load_weights,
    read_model_config,
)
from diff4mmlits.data.intensity import IntensityMap
from diff4mmlits.distributed import DistributedContext, all_reduce_mean, barrier, init_distributed
from diff4mmlits.errors import InputError
from diff4mmlits.progress import progress
from diff4mmlits.training import LOG_STATE_KEY, CurveGroup, TrainingLog, rank_seed, save_checkpoint
from diff4mmlits.translate.base import Batch, TranslationModel, broadcast_parameters
from diff4mmlits.translate.config import TranslateConfig
from diff4mmlits.translate.cut import CUT
from diff4mmlits.translate.cyclegan import CycleGAN
from diff4mmlits.translate.essnet import EssNet
from diff4mmlits.translate.networks import ResnetGenerator
from diff4mmlits.translate.sampling import SampleSource
from diff4mmlits.translate.translator import Translator, translate_array, translator_from_model

log = logging.getLogger(__name__)

METHODS: dict[str, type[TranslationModel]] = {"cyclegan": CycleGAN, "essnet": EssNet, "cut": CUT}
"""Translation methods by name (``--method``)."""

NETWORKS_NAME = "networks.safetensors"
CURVES = (CurveGroup("losses", None, ylabel="loss", log_scale=True),)
"""``curves.png``: every loss against the step on one log axis (not the learning rate nor the time)."""
PREVIEW_NAME = "preview.png"


@dataclass
class TranslatorData:
    """Everything a translator trains on: both domains in [-1, 1] and how they were normalised."""

    source: SampleSource
    target: SampleSource
    source_map: IntensityMap
    target_map: IntensityMap
    source_phase: str = "PVP"
    target_phase: str = "PVP"
    condition_channels: int = 0

    @property
    def out_channels(self) -> int:
        return self.target.channels - self.condition_channels


def build_model(
    config: TranslateConfig, in_channels: int, out_channels: int, condition_channels: int = 0,
    context: DistributedContext | None = None,
) -> TranslationModel:
    """The configured method's networks and optimisers."""
    if config.crop_vox % 4:
        raise InputError(f"translate.crop_vox={config.crop_vox}: must be a multiple of 4 (the generator halves the size twice)")
    return METHODS[config.method](config, in_channels, out_channels, condition_channels, context)


def learning_rate_factor(step: int, steps: int, decay_fraction: float) -> float:
    """CycleGAN's schedule: 1 for the first ``1 - decay_fraction`` of the steps, then linear to 0."""
    decay_start = steps * (1.0 - decay_fraction)
    if step < decay_start or decay_fraction <= 0:
        return 1.0
    return max(0.0, (steps - step) / max(steps - decay_start, 1.0))


def fit_translator(
    data: TranslatorData,
    config: TranslateConfig,
    out_dir: str | Path,
    *,
    device: str = "auto",
    resume: bool = False,
    seed: int = 0,
    extra_config: dict[str, Any] | None = None,
) -> Path:
    """Train ``config.method`` on ``data`` and write the model folder ``out_dir``.

    Each step draws ``batch_size`` source samples (with labels for EssNet) and as many target
    samples, independently (unpaired), and runs the method's alternating update.
    """
    out_dir = Path(out_dir)
    context = init_distributed(device)
    torch.manual_seed(seed)
    model = build_model(config, data.source.channels, data.out_channels, data.condition_channels, context).to(context.device)
    if model.needs_labels and data.source.labels is None:
        raise InputError(f"{config.method} needs labelled source cases (label.nii.gz); use --method cyclegan or cut otherwise")
    broadcast_parameters(model, context)
    sampler = torch.Generator().manual_seed(rank_seed(seed, context.rank))
    schedulers = {
        name: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: learning_rate_factor(s, config.steps, config.decay_fraction))
        for name, opt in model.optimizers.items()
    }
    model_config = translator_config(model, data, config, seed, extra_config)
    training_log = TrainingLog(out_dir, groups=CURVES, title=f"{config.method} training losses")
    start = 0
    if resume:
        start = _restore(out_dir, model, schedulers, sampler, model_config, context.device, training_log)
        for name, scheduler in schedulers.items():  # the schedule of *these* settings (steps may have grown)
            for group, base in zip(model.optimizers[name].param_groups, scheduler.base_lrs):
                group["lr"] = base * learning_rate_factor(start, config.steps, config.decay_fraction)
        if start and context.is_main:
            log.info("translate: resuming %s at step %d of %d", config.method, start, config.steps)
    began = time.perf_counter()
    bar = progress(range(start, config.steps), desc=f"train-translator ({config.method})", total=config.steps - start, unit="step")
    model.train()
    for step in bar:
        real_a, label_a = data.source.sample(config.batch_size, config.crop_vox, config.spatial_dims, sampler)
        real_b, _ = data.target.sample(config.batch_size, config.crop_vox, config.spatial_dims, sampler)
        losses = model.train_step(Batch(real_a, real_b, label_a if model.needs_labels else None).to(context.device), sampler)
        for scheduler in schedulers.values():
            scheduler.step()
        done = step + 1
        if done % config.log_every_steps == 0 or done == config.steps:
            losses = {name: all_reduce_mean(value, context) for name, value in losses.items()}
            training_log.add({"step": done, **losses, "lr": model.optimizers["G"].param_groups[0]["lr"],
                              "seconds": time.perf_counter() - began})
            bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items() if k in ("generator", "discriminator", "nce", "segmentation", "cycle")})
        if done % config.checkpoint_every_steps == 0 or done == config.steps:
            if context.is_main:
                save_translator(out_dir, model, schedulers, sampler, model_config, done, training_log)
            barrier(context)
    if context.is_main:
        if start >= config.steps:
            log.info("translate: %s already trained for %d steps", config.method, config.steps)
        training_log.plot()
        write_preview(out_dir / PREVIEW_NAME, data, translator_from_model(model, data, config, context.device))
    return out_dir


def translator_config(
    model: TranslationModel, data: TranslatorData, config: TranslateConfig, seed: int, extra: dict[str, Any] | None
) -> dict[str, Any]:
    """The ``config.json`` of a translator's model folder."""
    generator = model.generator
    assert isinstance(generator, ResnetGenerator)
    return {
        "kind": "translator",
        "method": config.method,
        "generator": {
            "in_channels": data.source.channels, "out_channels": data.out_channels, "filters": config.generator_filters,
            "n_blocks": config.generator_blocks, "n_down": generator.n_down, "spatial_dims": config.spatial_dims,
        },
        "condition_channels": data.condition_channels,
        "source_intensity": data.source_map.to_dict(),
        "target_intensity": data.target_map.to_dict(),
        "source_phase": data.source_phase,
        "target_phase": data.target_phase,
        "settings": config.model_dump(mode="json"),
        "seed": seed,
        "diff4mmlits_version": __version__,
        **(extra or {}),
    }


def save_translator(
    out_dir: Path, model: TranslationModel, schedulers: dict[str, Any], sampler: torch.Generator,
    model_config: dict[str, Any], step: int, training_log: TrainingLog,
) -> None:
    """Write the model folder (weights, all networks, training state, log, curves), atomically file by file."""
    save_checkpoint(out_dir, model.generator, {**model_config, "step": step}, {
        "method": model.method,
        "step": step,
        "optimizers": {name: opt.state_dict() for name, opt in model.optimizers.items()},
        "schedulers": {name: s.state_dict() for name, s in schedulers.items()},
        "sampler": sampler.get_state(),
        "pools": {name: pool.state() for name, pool in model.pools.items()},
    }, training_log, others={NETWORKS_NAME: model.nets})


def _restore(
    out_dir: Path, model: TranslationModel, schedulers: dict[str, Any], sampler: torch.Generator,
    model_config: dict[str, Any], device: torch.device, training_log: TrainingLog,
) -> int:
    """Load a saved training state into the model and its log rows into ``training_log``; returns the step reached."""
    state = load_training_state(out_dir, map_location=device)
    if state is None:
        log.info("translate: nothing to resume in %s; training from the start", out_dir)
        return 0
    saved = read_model_config(out_dir)
    if saved.get("method") != model.method or saved.get("generator") != model_config["generator"]:
        raise InputError(
            f"the checkpoint is a {saved.get('method')} model with generator {saved.get('generator')}; these settings "
            f"build {model.method} with {model_config['generator']}; train without --resume or use the same settings",
            out_dir,
        )
    load_weights(model.nets, out_dir / NETWORKS_NAME)
    for name, optimizer in model.optimizers.items():
        optimizer.load_state_dict(state["optimizers"][name])
    for name, scheduler in schedulers.items():
        scheduler.load_state_dict(state["schedulers"][name])
    sampler.set_state(state["sampler"].cpu())  # a CPU generator's state (map_location moved it to the device)
    for name, pool in model.pools.items():
        pool.load_state(state["pools"][name], device)
    step = int(state["step"])
    training_log.resume(step, state.get(LOG_STATE_KEY))
    return step


def write_preview(path: Path, data: TranslatorData, translator: Translator, count: int = 3) -> Path:
    """``preview.png``: one axial slice of the first source volumes (the most-labelled slice) and its translation."""
    from diff4mmlits.figures import draw_label_contours, plt, save_figure

    count = min(count, len(data.source.images))
    fig, axes = plt.subplots(2, count, figsize=(2.6 * count, 5.2), squeeze=False)
    for column in range(count):
        image = data.source.images[column].astype(np.float32)
        label = data.source.labels[column] if data.source.labels is not None else None
        z = int((label > 0).sum(axis=(1, 2)).argmax()) if label is not None and label.any() else image.shape[1] // 2
        if translator.spatial_dims == 3:
            low = max(0, min(z - translator.crop_vox // 2, image.shape[1] - translator.crop_vox))
            slab = image[:, low:low + translator.crop_vox]
            out = translate_array(slab, translator)[0, z - low]
        else:
            out = translate_array(image[:, z:z + 1], translator)[0, 0]
        for row, (picture, title) in enumerate(((image[0, z], "source"), (out, "translated"))):
            axes[row, column].imshow(picture, cmap="gray", vmin=-1, vmax=1)
            if label is not None:
                draw_label_contours(axes[row, column], label[z])
            axes[row, column].set_title(f"{title} {column + 1}, z={z}", fontsize=8)
            axes[row, column].axis("off")
    return save_figure(fig, path)
