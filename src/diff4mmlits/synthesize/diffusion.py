"""The tumor synthesizer: a latent diffusion model conditioned on a tumor mask (paper §III-B, Eq. 2–3).

Network: MONAI ``DiffusionModelUNet`` (3D) predicting the noise ε. Conditioning by concatenation
along channels: the noisy latent ``z_t``, the latent of the masked CT ``ℰ(x ⊙ (1 − m))`` and the
tumor mask ``m`` averaged onto the latent grid. Two modes:

* ``paper`` — the paper's scheme: one network for every phase, the phase as a class embedding;
  input ``[z_t (C), c (C), m (1)]`` → ε ``(C)``. Phases are synthesized separately from the same
  mask and the same initial noise.
* ``profile`` — the paper's scheme plus the tumor's enhancement in that phase (issue 14): input
  ``[z_t (C), c (C), m (1), m·k (1)]`` where ``k`` is the tumor-to-liver contrast of the phase
  (HU / :data:`PROFILE_SCALE_HU`). At synthesis all phases get the contrasts of one drawn profile,
  so one mask gets one coherent kind (arterial hyper-enhancement with washout, a cyst, …).
* ``joint`` — the latents of all four phases are denoised together: input ``[z_t (4C), c (4C),
  m (1), present (4), m·k (4)]`` → ε ``(4C)``; ``present`` marks the phases a case has (missing
  phases get zero conditions and are left out of the loss and the output).

The noise schedule (MONAI ``DDPMScheduler`` for training, ``DDIMScheduler`` for sampling) is a
separate object built from the same stored arguments; the sampling loop is in ``sampling.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

from diff4mmlits import PHASES
from diff4mmlits.checkpoint import WEIGHTS_NAME, file_sha256, load_weights, model_config_errors, read_model_config
from diff4mmlits.errors import InputError
from diff4mmlits.synthesize.config import DiffusionConfig
from diff4mmlits.synthesize.contrast import TumorContrast

MODEL_KIND = "latent-diffusion"
Mode = Literal["paper", "profile", "joint"]
PROFILE_SCALE_HU = 100.0
"""Contrasts enter the network as HU / this (the real range is about ±1)."""


def uses_profile(mode: str) -> bool:
    """Whether a mode's network takes the enhancement profile as a condition."""
    return mode in ("profile", "joint")


def denoiser_arguments(config: DiffusionConfig, latent_channels: int, mode: str) -> dict[str, Any]:
    """``DiffusionModelUNet`` constructor arguments for a mode and a latent width (stored in config.json)."""
    if len(config.attention_levels) != len(config.channels):
        raise InputError(f"diffusion.attention_levels has {len(config.attention_levels)} entries, channels has {len(config.channels)}; give one per level")
    bad = [c for c in config.channels if c % config.norm_num_groups]
    if bad:
        raise InputError(f"diffusion.channels {list(config.channels)}: every level must be divisible by norm_num_groups {config.norm_num_groups}")
    phases = len(PHASES)
    if mode == "paper":
        in_channels, out_channels, classes = 2 * latent_channels + 1, latent_channels, phases
    elif mode == "profile":
        in_channels, out_channels, classes = 2 * latent_channels + 2, latent_channels, phases
    else:
        in_channels, out_channels, classes = 2 * phases * latent_channels + 1 + 2 * phases, phases * latent_channels, None
    return {
        "spatial_dims": 3,
        "in_channels": in_channels,
        "out_channels": out_channels,
        "num_res_blocks": config.num_res_blocks,
        "channels": list(config.channels),
        "attention_levels": list(config.attention_levels),
        "norm_num_groups": config.norm_num_groups,
        "num_head_channels": config.num_head_channels,
        "num_class_embeds": classes,
    }


def build_denoiser(arguments: dict[str, Any]) -> DiffusionModelUNet:
    args = dict(arguments)
    for key in ("channels", "attention_levels"):
        args[key] = tuple(args[key])
    return DiffusionModelUNet(**args)


def schedule_arguments(config: DiffusionConfig) -> dict[str, Any]:
    """Noise-schedule arguments shared by the DDPM (training) and DDIM (sampling) schedulers."""
    args: dict[str, Any] = {"num_train_timesteps": config.num_train_timesteps, "schedule": config.schedule}
    if config.schedule != "cosine":
        args.update(beta_start=config.beta_start, beta_end=config.beta_end)
    return args


def build_scheduler(arguments: dict[str, Any], kind: Literal["ddpm", "ddim"], clip: float | None = None) -> DDPMScheduler | DDIMScheduler:
    """MONAI's scheduler for the stored schedule.

    ``clip``: the predicted clean latent is clipped to ``[-clip, clip]`` at every step (static
    thresholding, the range of the training latents); ``None`` leaves it free. With ε-prediction
    the clean latent is ``(z_t − √(1−ᾱ) ε̂) / √ᾱ``: near T any error of ε̂ is multiplied by ~15, and an
    unclipped sample from a briefly trained network runs away.
    """
    bounds = {"clip_sample": clip is not None, "clip_sample_min": -(clip or 1.0), "clip_sample_max": clip or 1.0}
    if kind == "ddpm":
        return DDPMScheduler(**arguments, **bounds)
    return DDIMScheduler(**arguments, **bounds)


def mask_to_latent(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """``(B, 1, Z, Y, X)`` mask in {0, 1} → the share of tumor per latent voxel ``(B, 1, Z/f, Y/f, X/f)``."""
    return F.avg_pool3d(mask.float(), kernel_size=factor, stride=factor)


def profile_map(mask_latent: torch.Tensor, contrast_hu: torch.Tensor) -> torch.Tensor:
    """``m · k``: the mask share ``(B, 1, z, y, x)`` times each sample's contrasts ``(B, K)`` (HU) → ``(B, K, z, y, x)``."""
    return mask_latent * (contrast_hu.float() / PROFILE_SCALE_HU).view(*contrast_hu.shape, 1, 1, 1)


def joint_condition(masked_latents: torch.Tensor, mask_latent: torch.Tensor, present: torch.Tensor,
                    profile_hu: torch.Tensor) -> torch.Tensor:
    """Joint-mode condition ``[c (4C), m (1), present (4), m·k (4)]``.

    Args:
        masked_latents: ``(B, 4, C, z, y, x)`` latents of the masked CT per phase slot (zeros for
            missing phases).
        mask_latent: ``(B, 1, z, y, x)``.
        present: ``(B, 4)`` 1 where the case has that phase.
        profile_hu: ``(B, 4)`` the tumor-to-liver contrast per phase slot, HU (zeroed where absent).
    """
    b, p, c = masked_latents.shape[:3]
    grid = masked_latents.shape[3:]
    presence = present.float().view(b, p, 1, 1, 1).expand(b, p, *grid)
    cond = masked_latents * present.float().view(b, p, 1, 1, 1, 1)
    profile = profile_map(mask_latent, profile_hu * present.float())
    return torch.cat([cond.reshape(b, p * c, *grid), mask_latent, presence, profile], dim=1)


def paper_condition(masked_latent: torch.Tensor, mask_latent: torch.Tensor,
                    contrast_hu: torch.Tensor | None = None) -> torch.Tensor:
    """Paper-mode condition ``[c (C), m (1)]`` for a batch of single phases ``(B, C, z, y, x)``;
    profile mode adds ``m·k (1)`` from each sample's contrast ``(B,)`` in HU."""
    parts = [masked_latent, mask_latent]
    if contrast_hu is not None:
        parts.append(profile_map(mask_latent, contrast_hu.view(-1, 1)))
    return torch.cat(parts, dim=1)


@dataclass
class LatentDiffusion:
    """A trained denoiser with its mode and schedule (what ``sampling.py`` needs).

    Attributes:
        network: the ``DiffusionModelUNet``.
        mode: ``paper`` or ``joint``.
        latent_channels: C, the autoencoder's latent width.
        crop_vox: the image crop edge it was trained on (voxels).
        schedule: noise-schedule arguments for MONAI's schedulers.
        checksum: SHA-256 prefix of the weights file (for provenance).
        largest_real_radius_mm: the largest real tumor of its training data (equivalent sphere).
        latent_clip: the largest |value| of its training latents (the sampler's clip range).
        real_tumors: the measured real tumors it learned from (their shapes and enhancement
            profiles are what synthesis draws).
    """

    network: DiffusionModelUNet
    mode: str
    latent_channels: int
    crop_vox: int
    schedule: dict[str, Any]
    checksum: str = ""
    largest_real_radius_mm: float | None = None
    latent_clip: float | None = None
    real_tumors: list[TumorContrast] = field(default_factory=list)


def load_diffusion(folder: str | Path, device: str | torch.device = "cpu") -> LatentDiffusion:
    """Load ``models/diffusion[-<mode>]/`` (config.json + weights.safetensors)."""
    folder = Path(folder)
    config = read_model_config(folder, kind=MODEL_KIND)
    with model_config_errors(folder):
        network = build_denoiser(config["arguments"])
        settings = {"mode": config["mode"], "latent_channels": int(config["latent_channels"]),
                    "crop_vox": int(config["crop_vox"]), "schedule": dict(config["schedule"]),
                    "largest_real_radius_mm": (config.get("real_tumor_radius_mm") or {}).get("max"),
                    "latent_clip": config.get("latent_clip"),
                    "real_tumors": [TumorContrast.from_dict(t) for t in config.get("real_tumors", [])]}
    expected = denoiser_arguments(DiffusionConfig(channels=tuple(config["arguments"]["channels"]),
                                                  attention_levels=tuple(config["arguments"]["attention_levels"]),
                                                  norm_num_groups=int(config["arguments"]["norm_num_groups"])),
                                  settings["latent_channels"], settings["mode"])["in_channels"]
    if int(config["arguments"]["in_channels"]) != expected:
        raise InputError(f"this {settings['mode']}-mode synthesizer was trained by an older version with other "
                         f"conditions; run 'diff4mmlits train-synthesizer' again", folder)
    load_weights(network, folder / WEIGHTS_NAME)
    network.to(device).eval()
    return LatentDiffusion(network=network, checksum=file_sha256(folder / WEIGHTS_NAME), **settings)
