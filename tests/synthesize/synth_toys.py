"""Test helpers of the synthesizer: tiny registered cases (a liver with known per-phase HU, tumors of
known per-phase contrast, and the same case without tumors) and small untrained models."""

from __future__ import annotations

import numpy as np
import torch

from diff4mmlits.config import Config
from diff4mmlits.data.case import Case
from diff4mmlits.data.volume import Volume
from diff4mmlits.synthesize.autoencoder import LatentCodec, autoencoder_arguments, build_autoencoder, downsample_factor
from diff4mmlits.synthesize.diffusion import LatentDiffusion, build_denoiser, denoiser_arguments, schedule_arguments

LIVER_HU = {"NC": 60.0, "AP": 75.0, "PVP": 110.0, "DP": 95.0}
TUMOR_HU = {"NC": 40.0, "AP": 115.0, "PVP": 85.0, "DP": 70.0}
"""A hypervascular tumor with washout: contrast −20, +40, −25, −25 HU."""
BODY_HU = {"NC": 40.0, "AP": 60.0, "PVP": 70.0, "DP": 60.0}
SPACING = (2.0, 2.0, 2.0)


def toy_pair(seed: int = 0, size: int = 24, phases: tuple[str, ...] = ("NC", "AP", "PVP", "DP"),
             tumors: int = 1, noise_hu: float = 5.0) -> tuple[Case, Case]:
    """``(real, normal)``: the same registered case with and without tumors (label 0/1/2 vs 0/1)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.arange(size, dtype=float)] * 3, indexing="ij")
    c = (size - 1) / 2
    body = ((y - c) / (0.48 * size)) ** 2 + ((x - c) / (0.48 * size)) ** 2 <= 1
    liver = ((z - c) / (0.38 * size)) ** 2 + ((y - c) / (0.36 * size)) ** 2 + ((x - c) / (0.36 * size)) ** 2 <= 1
    tumor = np.zeros(liver.shape, bool)
    for _ in range(tumors):
        centre = c + rng.uniform(-0.12, 0.12, 3) * size
        radius = rng.uniform(0.09, 0.14) * size
        tumor |= (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2
    tumor &= liver
    real_phases, normal_phases = {}, {}
    for name in phases:
        noise = rng.normal(0, noise_hu, liver.shape)
        normal = np.where(body, BODY_HU[name], -1000.0)
        normal = np.where(liver, LIVER_HU[name], normal) + noise
        real = np.where(tumor, TUMOR_HU[name] + noise, normal)
        normal_phases[name] = Volume(normal.astype(np.float32), SPACING)
        real_phases[name] = Volume(real.astype(np.float32), SPACING)
    label = liver.astype(np.uint8) + tumor.astype(np.uint8)
    real_case = Case(f"toy{seed}", real_phases, Volume(label, SPACING, kind="label"))
    normal_case = Case(f"toy{seed}", normal_phases, Volume(liver.astype(np.uint8), SPACING, kind="label"))
    return real_case, normal_case


def tiny_codec(config: Config, seed: int = 0) -> LatentCodec:
    torch.manual_seed(seed)
    arguments = autoencoder_arguments(config.autoencoder)
    network = build_autoencoder(arguments).eval()
    return LatentCodec(network=network, window_hu=config.autoencoder.window_hu, latent_scale=1.0,
                       factor=downsample_factor(arguments))


def tiny_diffusion(config: Config, mode: str, seed: int = 0) -> LatentDiffusion:
    torch.manual_seed(seed)
    channels = config.autoencoder.embedding_dim
    network = build_denoiser(denoiser_arguments(config.diffusion, channels, mode)).eval()
    # MONAI zero-initialises the output layer; give it weights so that the loop does something
    torch.nn.init.normal_(network.out[-1].conv.weight, std=0.02)
    return LatentDiffusion(network=network, mode=mode, latent_channels=channels, crop_vox=config.diffusion.crop_vox,
                           schedule=schedule_arguments(config.diffusion))
