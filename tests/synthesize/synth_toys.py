"""Test helpers of the synthesizer: tiny registered cases (a liver with known per-phase HU, tumors of
known per-phase contrast, and the same case without tumors) and small untrained models."""

from __future__ import annotations

import torch

from builders import HYPERVASCULAR, Anatomy, liver_pair
from diff4mmlits.config import Config
from diff4mmlits.data.case import Case
from diff4mmlits.synthesize.autoencoder import LatentCodec, autoencoder_arguments, build_autoencoder, downsample_factor
from diff4mmlits.synthesize.diffusion import LatentDiffusion, build_denoiser, denoiser_arguments, schedule_arguments


def toy_pair(seed: int = 0, size: int = 24, phases: tuple[str, ...] = ("NC", "AP", "PVP", "DP"),
             tumors: int = 1, noise_hu: float = 5.0) -> tuple[Case, Case]:
    """``(real, normal)``: the same registered ``toy<seed>`` case with and without its hypervascular
    tumors (label 0/1/2 vs 0/1), 2 mm isotropic."""
    anatomy = Anatomy(liver_centre=(0.5, 0.5, 0.5), liver_radii=(0.38, 0.36, 0.36), body_radii=(0.48, 0.48),
                      tumor_radius_vox=(0.09 * size, 0.14 * size), tumor_spread=0.12)
    return liver_pair(f"toy{seed}", seed, shape=(size,) * 3, spacing=(2.0, 2.0, 2.0), phases=phases, tumors=tumors,
                      contrast=HYPERVASCULAR, anatomy=anatomy, noise_hu=noise_hu)


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
