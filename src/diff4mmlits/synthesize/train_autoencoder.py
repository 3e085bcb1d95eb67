"""Training the synthesizer's autoencoder (paper §III-B, the VQGAN-based ℰ / 𝒟).

MONAI ``VQVAE`` on random normal-CT patches of every phase, HU window → [-1, 1]. Loss: L1
reconstruction + the quantizer's commitment loss + (after a warm-up) a least-squares adversarial
loss from MONAI's ``PatchDiscriminator``; MONAI's ``PerceptualLoss`` only when its weight is set
(it downloads pretrained weights). After training, the latent scale (1 / std of ℰ(x)) is measured
on training patches and the reconstruction MAE (HU, liver voxels) and PSNR on held-out patches;
both go into ``config.json``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.losses import PatchAdversarialLoss
from monai.networks.nets import PatchDiscriminator

from diff4mmlits.checkpoint import (
    WEIGHTS_NAME,
    load_training_state,
    load_weights,
    save_model_folder,
)
from diff4mmlits.data.case import Case
from diff4mmlits.data.intensity import window_map
from diff4mmlits.distributed import DistributedContext, all_reduce_mean, barrier, unwrap, wrap_ddp
from diff4mmlits.errors import InputError
from diff4mmlits.progress import progress
from diff4mmlits.synthesize.autoencoder import (
    MODEL_KIND,
    LatentCodec,
    autoencoder_arguments,
    build_autoencoder,
    downsample_factor,
)
from diff4mmlits.synthesize.config import AutoencoderConfig
from diff4mmlits.synthesize.crops import crop_box, extract_crop
from diff4mmlits.training import (
    LOG_STATE_KEY,
    RunningMean,
    TrainingLog,
    autocast,
    code_restart_seed,
    mixed_precision_checked,
    save_checkpoint,
    step_rng,
)

log = logging.getLogger(__name__)

DISCRIMINATOR_NAME = "discriminator.safetensors"
LOG_COLUMNS = ["l1", "quantization", "generator_adversarial", "discriminator", "perceptual", "codes_restarted"]


@dataclass
class PatchSource:
    """Random cubic patches of the phases of registered cases (HU), centred in a region or anywhere.

    Attributes:
        cases: cases whose phases lie on their label's grid (normal CT, or registered real CT).
        region: where centred patches are centred: ``liver`` (label > 0) or ``tumor`` (label 2).
        centres: per case, the ``(N, 3)`` indices of its region's voxels (computed once).
    """

    cases: list[Case]
    region: str = "liver"
    centres: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.cases:
            raise InputError("no cases to take autoencoder patches from; is the training split empty?")
        for case in self.cases:
            case.require_registered()
        select = (lambda c: c.liver_mask) if self.region == "liver" else (lambda c: c.tumor_mask)
        self.centres = [np.argwhere(select(case)) if case.label is not None else np.zeros((0, 3), int) for case in self.cases]

    def sample(self, rng: np.random.Generator, count: int, patch_vox: int, centred_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """``count`` patches: HU ``(count, 1, p, p, p)`` float32 and their liver mask (same shape, bool).

        A share ``centred_fraction`` is centred on a voxel of the region, the rest anywhere in the
        volume. Padding (a volume smaller than the patch) is -1000 HU, outside the liver.
        """
        images = np.empty((count, 1) + (patch_vox,) * 3, dtype=np.float32)
        livers = np.zeros_like(images, dtype=bool)
        for i in range(count):
            index = int(rng.integers(len(self.cases)))
            case, centres = self.cases[index], self.centres[index]
            phase = case.phase_names[int(rng.integers(len(case.phase_names)))]
            volume = case.phases[phase]
            if len(centres) and rng.random() < centred_fraction:
                centre = centres[int(rng.integers(len(centres)))]
            else:
                centre = np.array([rng.integers(n) for n in volume.shape])
            box = crop_box(centre, patch_vox, volume.shape)
            images[i, 0] = extract_crop(volume.array, box, fill=-1000.0)
            if case.label is not None:
                livers[i, 0] = extract_crop(case.liver_mask, box, fill=0.0) > 0.5
        return images, livers


def training_batch(normal: PatchSource, tumors: PatchSource | None, rng: np.random.Generator, config: AutoencoderConfig) -> np.ndarray:
    """One batch of HU patches: normal CT (centred in the liver) and, a share ``tumor_patch_fraction``, real tumors."""
    n_tumor = int(rng.binomial(config.batch_size, config.tumor_patch_fraction)) if tumors is not None else 0
    parts = [normal.sample(rng, config.batch_size - n_tumor, config.patch_vox, config.liver_patch_fraction)[0]]
    if n_tumor:
        parts.append(tumors.sample(rng, n_tumor, config.patch_vox, 1.0)[0])
    return np.concatenate(parts)


@torch.no_grad()
def restart_dead_codes(network: torch.nn.Module, images_unit: torch.Tensor, generator: torch.Generator,
                       context: DistributedContext) -> int:
    """Move codebook entries that (almost) no latent uses onto encoder outputs of ``images_unit``.

    Without this, MONAI's EMA quantizer settles on a few dozen codes and the decoder cannot tell a
    tumor from its surroundings. A code is dead when its EMA usage is under a tenth of the mean;
    it is re-placed on a random latent vector of the batch (rank 0 draws, every rank copies).
    Returns the number of codes moved.
    """
    quantizer = network.quantizer.quantizer
    usage = quantizer.ema_cluster_size
    dead = usage < 0.1 * usage.mean()
    count = int(dead.sum())
    if count == 0:
        return 0
    latents = network.encode(images_unit)
    flat = latents.movedim(1, -1).reshape(-1, latents.shape[1]).float()
    pick = torch.randint(0, flat.shape[0], (count,), generator=generator, device="cpu").to(flat.device)
    fresh = flat[pick]
    if context.is_distributed:
        torch.distributed.broadcast(fresh, src=0)
    quantizer.embedding.weight.data[dead] = fresh.to(quantizer.embedding.weight.dtype)
    quantizer.ema_w.data[dead] = fresh.to(quantizer.ema_w.dtype)
    quantizer.ema_cluster_size.data[dead] = 1.0
    return count


@torch.no_grad()
def evaluate_reconstruction(codec: LatentCodec, images_hu: np.ndarray, liver: np.ndarray) -> dict[str, float]:
    """Reconstruction quality of ``codec`` on HU patches ``(B, 1, p, p, p)``.

    Returns ``mae_liver_hu`` (mean |x̃ − x| over liver voxels, HU, both windowed), ``mae_hu`` (all
    voxels) and ``psnr_db`` (peak = the window's width).
    """
    codec.network.eval()
    lo, hi = codec.window_hu
    target = np.clip(images_hu, lo, hi)
    recon = np.concatenate([codec.to_hu(codec.decode(codec.encode(codec.to_unit(images_hu[i:i + 2]))))
                            for i in range(0, len(images_hu), 2)])
    error = np.abs(recon - target)
    mse = float(np.mean(error**2))
    return {
        "mae_liver_hu": float(error[liver].mean()) if liver.any() else float("nan"),
        "mae_hu": float(error.mean()),
        "psnr_db": float(10 * math.log10((hi - lo) ** 2 / max(mse, 1e-12))),
    }


@torch.no_grad()
def measure_latent_scale(network: torch.nn.Module, images_unit: torch.Tensor) -> float:
    """1 / std of the encoder's output on ``images_unit`` ``(B, 1, p, p, p)`` (the LDM's scale factor)."""
    network.eval()
    latents = torch.cat([network.encode(images_unit[i:i + 2]) for i in range(0, len(images_unit), 2)])
    return float(1.0 / max(latents.float().std().item(), 1e-6))


def train_autoencoder(
    train_cases: list[Case],
    validation_cases: list[Case],
    config: AutoencoderConfig,
    folder: str | Path,
    seed: int = 0,
    context: DistributedContext | None = None,
    resume: bool = False,
    tumor_cases: list[Case] | None = None,
) -> dict[str, Any]:
    """Train the autoencoder and write its model folder; returns the metrics (rank 0; others ``{}``).

    Args:
        train_cases: normal (tumor-free) cases, every phase on the label's grid.
        tumor_cases: registered real cases; ``config.tumor_patch_fraction`` of the patches are
            taken around their tumors (none when ``None`` or when they have no tumor).
        validation_cases: held-out cases for the reconstruction metrics (the training cases are
            used, and the metrics marked ``held_out: false``, when this is empty).
        config: the ``autoencoder`` section.
        folder: the model folder (``models/autoencoder``).
        seed: seeds the initial weights and every batch.
        context: the distributed context (one CPU process when ``None``).
        resume: continue from ``training_state.pt`` when there is one.
    """
    context = context or DistributedContext()
    device = context.device
    folder = Path(folder)
    arguments = autoencoder_arguments(config)
    factor = downsample_factor(arguments)
    if config.patch_vox % factor:
        raise InputError(f"autoencoder.patch_vox {config.patch_vox} must be divisible by {factor} (2 per level of channels)")
    torch.manual_seed(seed)
    network = build_autoencoder(arguments).to(device)
    discriminator = PatchDiscriminator(
        spatial_dims=3, channels=config.discriminator_channels, in_channels=1,
        num_layers_d=config.discriminator_layers, norm="INSTANCE",
    ).to(device)
    opt_g = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.learning_rate)
    start = 0
    state = load_training_state(folder, map_location=device) if resume else None
    if state is not None:
        load_weights(network, folder / WEIGHTS_NAME)
        load_weights(discriminator, folder / DISCRIMINATOR_NAME)
        opt_g.load_state_dict(state["optimizer_generator"])
        opt_d.load_state_dict(state["optimizer_discriminator"])
        start = int(state["step"])
        log.info("train-autoencoder: resuming at step %d of %d", start, config.steps)
    network_ddp, discriminator_ddp = wrap_ddp(network, context), wrap_ddp(discriminator, context)
    adversarial = PatchAdversarialLoss(criterion="least_squares")
    perceptual = None
    if config.perceptual_weight > 0:
        from monai.losses import PerceptualLoss

        perceptual = PerceptualLoss(spatial_dims=3, network_type="squeeze", is_fake_3d=True, fake_3d_ratio=0.2).to(device)
    source = PatchSource(train_cases)
    with_tumors = [case for case in tumor_cases or [] if case.label is not None and case.tumor_mask.any()]
    tumor_source = PatchSource(with_tumors, region="tumor") if with_tumors and config.tumor_patch_fraction > 0 else None
    training_log = TrainingLog(folder, ["step", *LOG_COLUMNS], title="autoencoder (VQVAE + PatchDiscriminator)")
    if state is not None:
        training_log.resume(start, state.get(LOG_STATE_KEY))
    running = RunningMean()
    log_every = max(1, min(config.checkpoint_every_steps, max(config.steps // 50, 1)))
    probe = torch.from_numpy(window_map(config.window_hu).to_unit(
        training_batch(source, tumor_source, np.random.default_rng([seed, 777]), config), clip_input=True)).to(device)
    mixed = mixed_precision_checked(device, True, torch.nn.ModuleDict({"autoencoder": network, "discriminator": discriminator}),
                                    lambda: (network(probe), discriminator(probe), discriminator(torch.cat([probe, probe]))),
                                    "train-autoencoder")
    bar = progress(range(start, config.steps), desc="train-autoencoder", total=config.steps - start, unit="step")
    for step in bar:
        network_ddp.train()
        discriminator_ddp.train()
        hu = training_batch(source, tumor_source, step_rng(seed, context.rank, step), config)
        x = torch.from_numpy(window_map(config.window_hu).to_unit(hu, clip_input=True)).to(device)
        use_adversarial = config.adversarial_weight > 0 and step >= config.adversarial_start_step
        with autocast(device, mixed):
            reconstruction, quantization = network_ddp(x)
            reconstruction = reconstruction.float()
            l1 = (reconstruction - x).abs().mean()
            loss_g = l1 + quantization.float()
            values = {"l1": l1.item(), "quantization": quantization.item()}
            if use_adversarial:
                g_adv = adversarial(discriminator_ddp(reconstruction)[-1].float(), target_is_real=True, for_discriminator=False)
                loss_g = loss_g + config.adversarial_weight * g_adv
                values["generator_adversarial"] = g_adv.item()
            if perceptual is not None:
                p_loss = perceptual(reconstruction, x)
                loss_g = loss_g + config.perceptual_weight * p_loss
                values["perceptual"] = p_loss.item()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if use_adversarial:
            with autocast(device, mixed):
                logits = discriminator_ddp(torch.cat([reconstruction.detach(), x]))[-1].float()
                fake, real = logits.chunk(2)
                loss_d = 0.5 * (adversarial(fake, target_is_real=False, for_discriminator=True)
                                + adversarial(real, target_is_real=True, for_discriminator=True))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            values["discriminator"] = loss_d.item()
        if config.restart_dead_codes_every and (step + 1) % config.restart_dead_codes_every == 0:
            values["codes_restarted"] = restart_dead_codes(unwrap(network_ddp), x, torch.Generator().manual_seed(code_restart_seed(seed, step)), context)
        running.add(**values)
        done = step + 1
        if done % log_every == 0 or done == config.steps:
            means = {k: all_reduce_mean(v, context) for k, v in running.pop().items()}
            training_log.add({"step": done, **means})
            bar.set_postfix({k: f"{v:.4f}" for k, v in means.items()})
        if context.is_main and (done % config.checkpoint_every_steps == 0 or done == config.steps):
            save_checkpoint(folder, unwrap(network_ddp), {"kind": MODEL_KIND, "arguments": arguments,
                                                          "window_hu": list(config.window_hu), "factor": factor},
                            {"step": done, "optimizer_generator": opt_g.state_dict(), "optimizer_discriminator": opt_d.state_dict()},
                            training_log, others={DISCRIMINATOR_NAME: unwrap(discriminator_ddp)}, final=done == config.steps)
    barrier(context)
    if not context.is_main:
        return {}
    return finish_autoencoder(network, train_cases, validation_cases, config, folder, seed, arguments, factor)


def finish_autoencoder(
    network: torch.nn.Module,
    train_cases: list[Case],
    validation_cases: list[Case],
    config: AutoencoderConfig,
    folder: Path,
    seed: int,
    arguments: dict[str, Any],
    factor: int,
) -> dict[str, Any]:
    """Measure the latent scale and the held-out reconstruction metrics; write the model folder with them."""
    network.eval()
    device = next(network.parameters()).device
    count = max(config.validation_patches, 2)
    hu, _ = PatchSource(train_cases).sample(np.random.default_rng([seed, 7]), count, config.patch_vox, config.liver_patch_fraction)
    scale = measure_latent_scale(network, torch.from_numpy(window_map(config.window_hu).to_unit(hu, clip_input=True)).to(device))
    codec = LatentCodec(network=network, window_hu=config.window_hu, latent_scale=scale, factor=factor)
    held_out = bool(validation_cases)
    hu, liver = PatchSource(validation_cases or train_cases).sample(np.random.default_rng([seed, 8]), count, config.patch_vox, 1.0)
    metrics = {**evaluate_reconstruction(codec, hu, liver), "held_out": held_out, "patches": count}
    save_model_folder(folder, network, {
        "kind": MODEL_KIND, "arguments": arguments, "window_hu": list(config.window_hu), "factor": factor,
        "latent_scale": scale, "patch_vox": config.patch_vox, "steps": config.steps, "seed": seed, "metrics": metrics,
    })
    log.info("train-autoencoder: reconstruction MAE %.1f HU in the liver, PSNR %.1f dB (%s patches)",
             metrics["mae_liver_hu"], metrics["psnr_db"], "held-out" if held_out else "training")
    return metrics
