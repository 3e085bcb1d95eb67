"""Training the tumor synthesizer (paper §III-B, Eq. 3): ε-prediction MSE in the autoencoder's latent space.

Training data: crops around every real tumor of the registered training cases (jittered and
flipped ``crops_per_tumor`` times), every phase. For each crop the frozen autoencoder gives the
latent of the real CT ``z_0`` and the latent of the masked CT ``c = ℰ(x ⊙ (1 − m))``, where ``m``
is the annotated (PVP) tumor mask closed and dilated as in the paper (the same ``m`` serves every
phase, as at synthesis time). Each crop also carries its tumor's enhancement profile (the
tumor-to-liver contrast per phase, :mod:`~diff4mmlits.synthesize.contrast`), the condition of the
``profile`` and ``joint`` modes. These latents are computed once; training then draws batches,
noises ``z_0`` with MONAI's ``DDPMScheduler`` at random timesteps and regresses the noise:

    L_LDM = E ‖ε − ε_θ(z_t, [c, m], t)‖²
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from diff4mmlits import PHASES
from diff4mmlits.checkpoint import (
    WEIGHTS_NAME,
    load_training_state,
    load_weights,
    save_model_folder,
)
from diff4mmlits.data.case import Case
from diff4mmlits.data.intensity import window_map
from diff4mmlits.data.measures import equivalent_radius_mm
from diff4mmlits.distributed import DistributedContext, all_reduce_mean, barrier, unwrap, wrap_ddp
from diff4mmlits.errors import InputError
from diff4mmlits.progress import progress
from diff4mmlits.synthesize.autoencoder import LatentCodec
from diff4mmlits.synthesize.config import DiffusionConfig
from diff4mmlits.synthesize.contrast import TumorContrast, measure_tumor_contrasts
from diff4mmlits.synthesize.crops import crop_box, dilate_tumor_mask, extract_crop, masked_unit
from diff4mmlits.synthesize.diffusion import (
    MODEL_KIND,
    build_denoiser,
    build_scheduler,
    denoiser_arguments,
    joint_condition,
    mask_to_latent,
    paper_condition,
    schedule_arguments,
    uses_profile,
)
from diff4mmlits.training import (
    EVALUATION_STREAM,
    LOG_STATE_KEY,
    RunningMean,
    TrainingLog,
    autocast,
    mixed_precision_checked,
    save_checkpoint,
    step_rng,
)

log = logging.getLogger(__name__)

JOINT_PHASE_DROPOUT = 0.15
"""Joint mode: chance that a present phase is hidden during training (so that cases with fewer phases work)."""


@dataclass
class TumorCrops:
    """Latents of the crops around real tumors (frozen autoencoder), every phase slot in ``PHASES`` order.

    Attributes:
        latents: ``(N, 4, C, l, l, l)`` latents of the real CT (zeros for missing phases).
        masked: ``(N, 4, C, l, l, l)`` latents of the masked CT.
        mask: ``(N, 1, l, l, l)`` the dilated tumor mask on the latent grid (share per latent voxel).
        present: ``(N, 4)`` bool, the phases the crop's case has.
        profiles: ``(N, 4)`` the crop's tumor's contrast per phase slot, HU (0 where missing).
        tumors: the measured real tumors (one per tumor, not per crop; recorded with the model).
        radii_mm: equivalent-sphere radius of each real tumor (one per tumor, not per crop), mm.
        close_kernel_vox, dilate_kernel_vox: the mask preparation the condition was made with.
    """

    latents: torch.Tensor
    masked: torch.Tensor
    mask: torch.Tensor
    present: torch.Tensor
    profiles: torch.Tensor
    tumors: list[TumorContrast] = field(default_factory=list)
    radii_mm: list[float] = field(default_factory=list)
    close_kernel_vox: int = 5
    dilate_kernel_vox: int = 3

    def __len__(self) -> int:
        return int(self.latents.shape[0])


def tumor_centres(tumor: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """Centroids ``(z, y, x)`` and voxel counts of the connected tumor components (26-connectivity), largest first."""
    labels, count = ndimage.label(tumor, structure=np.ones((3, 3, 3), bool))
    if count == 0:
        return []
    sizes = ndimage.sum_labels(tumor, labels, index=np.arange(1, count + 1))
    centres = ndimage.center_of_mass(tumor, labels, index=np.arange(1, count + 1))
    order = np.argsort(-np.asarray(sizes))
    return [(np.asarray(centres[i]), int(sizes[i])) for i in order]


@torch.no_grad()
def build_tumor_crops(
    cases: list[Case],
    codec: LatentCodec,
    config: DiffusionConfig,
    rng: np.random.Generator,
    close_kernel_vox: int = 5,
    dilate_kernel_vox: int = 3,
) -> TumorCrops:
    """Encode ``config.crops_per_tumor`` jittered, flipped crops around each real tumor (see :class:`TumorCrops`).

    The condition is the tumor mask prepared as the inpainter's (paper §III-A: ``close_kernel_vox``
    closing, one ``dilate_kernel_vox`` dilation; ``inpaint.close/dilate_kernel_vox``). In the
    ``profile`` and ``joint`` modes a tumor too small for its contrast to be measured is left out."""
    if config.crop_vox % codec.factor:
        raise InputError(f"diffusion.crop_vox {config.crop_vox} must be divisible by the autoencoder's factor {codec.factor}")
    images, masked, masks, present, radii, profiles, measured_all = [], [], [], [], [], [], []
    for case in cases:
        case.require_registered()
        tumor = case.tumor_mask
        condition = dilate_tumor_mask(tumor, close_kernel_vox, dilate_kernel_vox)
        measured = measure_tumor_contrasts(case)
        measured_all += measured
        for centre, voxels in tumor_centres(tumor):
            match = next((t for t in measured if np.abs(np.asarray(t.centre_vox) - centre).max() < 0.5), None)
            if match is None and uses_profile(config.mode):
                continue
            profile = np.array([match.contrast_hu.get(p, 0.0) if match else 0.0 for p in PHASES], np.float32)
            radii.append(equivalent_radius_mm(voxels, case.annotated.spacing_mm))
            for k in range(config.crops_per_tumor):
                shift = rng.integers(-config.jitter_vox, config.jitter_vox + 1, size=3) if k else np.zeros(3, int)
                flips = [axis for axis in range(3) if k and rng.random() < 0.5]
                box = crop_box(centre + shift, config.crop_vox, case.annotated.shape)
                mask = extract_crop(condition, box, fill=0.0) > 0.5
                mask = np.flip(mask, flips) if flips else mask
                slots = np.zeros((len(PHASES), config.crop_vox, config.crop_vox, config.crop_vox), np.float32)
                has = np.zeros(len(PHASES), bool)
                for name, volume in case.phases.items():
                    crop = window_map(codec.window_hu).to_unit(extract_crop(volume.array, box, fill=-1000.0), clip_input=True)
                    slots[PHASES.index(name)] = np.flip(crop, flips) if flips else crop
                    has[PHASES.index(name)] = True
                images.append(slots)
                profiles.append(profile)
                masked.append(masked_unit(slots, mask[None]))
                masks.append(mask)
                present.append(has)
    if not images:
        raise InputError("the training cases have no (measurable) tumor (label 2); the synthesizer learns from real tumors")
    latents = _encode_slots(codec, np.stack(images), np.stack(present))
    masked_latents = _encode_slots(codec, np.stack(masked), np.stack(present))
    mask_tensor = torch.from_numpy(np.stack(masks)[:, None].astype(np.float32))
    return TumorCrops(
        latents=latents, masked=masked_latents, mask=mask_to_latent(mask_tensor, codec.factor),
        present=torch.from_numpy(np.stack(present)), profiles=torch.from_numpy(np.stack(profiles)),
        tumors=measured_all, radii_mm=radii,
        close_kernel_vox=close_kernel_vox, dilate_kernel_vox=dilate_kernel_vox,
    )


def _encode_slots(codec: LatentCodec, slots: np.ndarray, present: np.ndarray, batch: int = 8) -> torch.Tensor:
    """``(N, 4, c, c, c)`` unit images → ``(N, 4, C, l, l, l)`` latents on the CPU (zeros where absent)."""
    n, p = slots.shape[:2]
    index = np.argwhere(present)
    flat = slots[present][:, None]
    encoded = torch.cat([codec.encode(torch.from_numpy(np.ascontiguousarray(flat[i:i + batch])).to(codec.device)).float().cpu()
                         for i in range(0, len(flat), batch)])
    out = torch.zeros((n, p) + tuple(encoded.shape[1:]))
    out[index[:, 0], index[:, 1]] = encoded
    return out


def make_batch(crops: TumorCrops, mode: str, rng: np.random.Generator, batch_size: int) -> dict[str, torch.Tensor]:
    """One training batch: ``z0`` (target latents), ``condition`` and, in paper and profile mode, ``class_labels``.

    Paper and profile mode draw (crop, phase) pairs among the phases present. Joint mode draws crops; each
    present phase is hidden with probability :data:`JOINT_PHASE_DROPOUT` (one always stays), and
    the latent of a hidden or missing phase is set to zero, so the network learns to leave such
    slots empty.
    """
    if mode in ("paper", "profile"):
        pairs = torch.nonzero(crops.present)
        chosen = pairs[torch.from_numpy(rng.integers(len(pairs), size=batch_size))]
        n, p = chosen[:, 0], chosen[:, 1]
        contrast = crops.profiles[n, p] if mode == "profile" else None
        return {
            "z0": crops.latents[n, p],
            "condition": paper_condition(crops.masked[n, p], crops.mask[n], contrast),
            "class_labels": p.long(),
            "mask": crops.mask[n],
        }
    n = torch.from_numpy(rng.integers(len(crops), size=batch_size))
    present = crops.present[n].clone()
    drop = torch.from_numpy(rng.random(present.shape) < JOINT_PHASE_DROPOUT) & present
    keep_one = present.float().argmax(dim=1)
    drop[torch.arange(len(n)), keep_one] = False
    present &= ~drop
    z0 = crops.latents[n] * present.float().view(len(n), -1, 1, 1, 1, 1)
    return {"z0": z0.flatten(1, 2), "condition": joint_condition(crops.masked[n], crops.mask[n], present, crops.profiles[n]),
            "mask": crops.mask[n]}


def diffusion_loss(network: torch.nn.Module, scheduler: Any, batch: dict[str, torch.Tensor], rng: np.random.Generator,
                   tumor_weight: float = 0.0) -> torch.Tensor:
    """The paper's Eq. 3 on one batch: noise ``z0`` at random timesteps, MSE of the predicted noise.

    With ``tumor_weight`` > 0 the MSE inside the (latent) tumor mask is added again with that
    weight, ``L = mean(e) + w · Σ m·e / Σ m`` (``e`` the squared error, ``m`` the mask share per
    latent voxel): the tumor is a few latent voxels of a crop whose rest the condition already
    gives, and without it the network learns the background first.
    """
    z0 = batch["z0"]
    noise = torch.from_numpy(rng.standard_normal(z0.shape).astype(np.float32)).to(z0.device)
    timesteps = torch.from_numpy(rng.integers(scheduler.num_train_timesteps, size=z0.shape[0])).long().to(z0.device)
    noisy = scheduler.add_noise(original_samples=z0, noise=noise, timesteps=timesteps)
    prediction = network(torch.cat([noisy, batch["condition"]], dim=1), timesteps=timesteps, class_labels=batch.get("class_labels"))
    error = (prediction.float() - noise) ** 2
    loss = error.mean()
    if tumor_weight > 0:
        mask = batch["mask"].float()
        loss = loss + tumor_weight * (error * mask).sum() / (mask.sum() * error.shape[1]).clamp_min(1e-6)
    return loss


@torch.no_grad()
def evaluation_loss(network: torch.nn.Module, scheduler: Any, crops: TumorCrops, mode: str, seed: int, batches: int = 4,
                    batch_size: int = 8, tumor_weight: float = 0.0) -> float:
    """The training loss averaged over fixed batches, noise and timesteps (comparable before and after training)."""
    network.eval()
    device = next(network.parameters()).device
    losses = []
    for i in range(batches):
        rng = np.random.default_rng([seed, EVALUATION_STREAM, i])
        batch = {k: v.to(device) for k, v in make_batch(crops, mode, rng, batch_size).items()}
        losses.append(diffusion_loss(network, scheduler, batch, rng, tumor_weight).item())
    return float(np.mean(losses))


def _radius_summary(radii: list[float]) -> dict[str, float] | None:
    if not radii:
        return None
    return {"min": float(np.min(radii)), "median": float(np.median(radii)), "max": float(np.max(radii)), "count": len(radii)}


def train_diffusion(
    crops: TumorCrops,
    config: DiffusionConfig,
    folder: str | Path,
    seed: int = 0,
    context: DistributedContext | None = None,
    resume: bool = False,
    extra_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train the denoiser of ``config.mode`` on ``crops`` and write its model folder.

    Args:
        crops: latents from :func:`build_tumor_crops`.
        config: the ``diffusion`` section (``mode`` picks paper or joint).
        folder: ``models/diffusion`` (paper) or ``models/diffusion-<mode>``.
        seed: seeds the initial weights, batches, noise and timesteps.
        context: the distributed context (one CPU process when ``None``).
        resume: continue from ``training_state.pt`` when there is one.
        extra_config: recorded in ``config.json`` (e.g. the autoencoder's checksum).

    Returns the metrics written to ``config.json`` (rank 0; other ranks ``{}``).
    """
    context = context or DistributedContext()
    device = context.device
    folder = Path(folder)
    latent_channels = int(crops.latents.shape[2])
    arguments = denoiser_arguments(config, latent_channels, config.mode)
    schedule = schedule_arguments(config)
    scheduler = build_scheduler(schedule, "ddpm")
    torch.manual_seed(seed)
    network = build_denoiser(arguments).to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate)
    start = 0
    state = load_training_state(folder, map_location=device) if resume else None
    if state is not None:
        load_weights(network, folder / WEIGHTS_NAME)
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        log.info("train-synthesizer: resuming at step %d of %d", start, config.steps)
    initial_loss = evaluation_loss(network, scheduler, crops, config.mode, seed, tumor_weight=config.tumor_loss_weight)
    probe = {k: v.to(device) for k, v in make_batch(crops, config.mode, np.random.default_rng([seed, 777]), config.batch_size).items()}
    mixed = mixed_precision_checked(device, True, network, lambda: diffusion_loss(network, scheduler, probe, np.random.default_rng(0)),
                                    "train-synthesizer")
    network_ddp = wrap_ddp(network, context)
    training_log = TrainingLog(folder, ["step", "loss"], title=f"latent diffusion ({config.mode} mode), Eq. 3 loss")
    if state is not None:
        training_log.resume(start, state.get(LOG_STATE_KEY))
    running = RunningMean()
    log_every = max(1, min(config.checkpoint_every_steps, max(config.steps // 50, 1)))
    record = {
        "kind": MODEL_KIND, "mode": config.mode, "arguments": arguments, "latent_channels": latent_channels,
        "crop_vox": config.crop_vox, "schedule": schedule, "close_kernel_vox": crops.close_kernel_vox,
        "dilate_kernel_vox": crops.dilate_kernel_vox, "tumor_loss_weight": config.tumor_loss_weight, "seed": seed,
        "real_tumor_radius_mm": _radius_summary(crops.radii_mm),
        "latent_clip": float(crops.latents.abs().max()),
        "real_tumors": [t.to_dict() for t in crops.tumors],
        **(extra_config or {}),
    }
    bar = progress(range(start, config.steps), desc=f"train-synthesizer ({config.mode})", total=config.steps - start, unit="step")
    for step in bar:
        network_ddp.train()
        rng = step_rng(seed, context.rank, step)
        batch = {k: v.to(device) for k, v in make_batch(crops, config.mode, rng, config.batch_size).items()}
        with autocast(device, mixed):
            loss = diffusion_loss(network_ddp, scheduler, batch, rng, config.tumor_loss_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running.add(loss=loss.item())
        done = step + 1
        if done % log_every == 0 or done == config.steps:
            means = {k: all_reduce_mean(v, context) for k, v in running.pop().items()}
            training_log.add({"step": done, **means})
            bar.set_postfix(loss=f"{means['loss']:.4f}")
        if context.is_main and (done % config.checkpoint_every_steps == 0 or done == config.steps):
            save_checkpoint(folder, unwrap(network_ddp), {**record, "steps_done": done},
                            {"step": done, "optimizer": optimizer.state_dict()}, training_log, final=done == config.steps)
    barrier(context)
    if not context.is_main:
        return {}
    final_loss = evaluation_loss(network, scheduler, crops, config.mode, seed, tumor_weight=config.tumor_loss_weight)
    metrics = {"evaluation_loss_initial": initial_loss, "evaluation_loss_final": final_loss,
               "crops": len(crops), "steps": config.steps}
    save_model_folder(folder, network, {**record, "steps_done": config.steps, "metrics": metrics})
    log.info("train-synthesizer (%s): diffusion loss %.4f → %.4f on %d tumor crops", config.mode, initial_loss, final_loss, len(crops))
    return metrics
