"""The synthesizer's autoencoder (paper §III-B: the VQGAN-based CT feature encoder ℰ and decoder 𝒟).

A MONAI ``VQVAE`` (3D, one channel: every phase goes through the same network). Images are HU
windowed to ``window_hu`` and mapped to [-1, 1]. The diffusion model works on the encoder's
continuous output ``ℰ(x)`` times ``latent_scale`` (≈ unit variance); decoding quantizes to the
codebook and runs the decoder, ``x̃ = 𝒟(q(z / latent_scale))``. The scale factor is part of the
model folder's ``config.json``, as diffusers keeps it in the autoencoder's config.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.networks.nets import VQVAE

from diff4mmlits.checkpoint import WEIGHTS_NAME, load_weights, model_config_errors, read_model_config
from diff4mmlits.data.intensity import window_map
from diff4mmlits.errors import InputError
from diff4mmlits.synthesize.config import AutoencoderConfig

MODEL_KIND = "vqvae"


def autoencoder_arguments(config: AutoencoderConfig) -> dict[str, Any]:
    """The ``VQVAE`` constructor arguments for ``config`` (stored in ``config.json``)."""
    levels = len(config.channels)
    return {
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": 1,
        "channels": list(config.channels),
        "num_res_layers": config.num_res_layers,
        "num_res_channels": list(config.channels),
        "downsample_parameters": [[2, 4, 1, 1]] * levels,
        "upsample_parameters": [[2, 4, 1, 1, 0]] * levels,
        "num_embeddings": config.num_embeddings,
        "embedding_dim": config.embedding_dim,
    }


def build_autoencoder(arguments: dict[str, Any]) -> VQVAE:
    """A MONAI ``VQVAE`` from stored constructor arguments."""
    args = dict(arguments)
    args["downsample_parameters"] = tuple(tuple(p) for p in args["downsample_parameters"])
    args["upsample_parameters"] = tuple(tuple(p) for p in args["upsample_parameters"])
    args["channels"] = tuple(args["channels"])
    args["num_res_channels"] = tuple(args["num_res_channels"])
    return VQVAE(**args)


def downsample_factor(arguments: dict[str, Any]) -> int:
    """How many image voxels one latent voxel spans along each axis (2 per level)."""
    return int(np.prod([p[0] for p in arguments["downsample_parameters"]]))


@dataclass
class LatentCodec:
    """The trained autoencoder with its window and latent scale: HU crops ↔ scaled latents.

    Attributes:
        network: the ``VQVAE`` (in eval mode once loaded).
        window_hu: HU window mapped to [-1, 1].
        latent_scale: multiplies ``ℰ(x)`` so the latents have about unit variance.
        factor: image voxels per latent voxel along each axis.
    """

    network: VQVAE
    window_hu: tuple[float, float]
    latent_scale: float
    factor: int

    @property
    def latent_channels(self) -> int:
        return int(self.network.embedding_dim)

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def to_unit(self, hu: np.ndarray) -> torch.Tensor:
        """HU ``(B, 1, Z, Y, X)`` array → [-1, 1] tensor on the codec's device (HU clipped to the window first)."""
        return torch.from_numpy(window_map(self.window_hu).to_unit(hu, clip_input=True)).to(self.device)

    def to_hu(self, unit: torch.Tensor) -> np.ndarray:
        """[-1, 1] tensor → HU array (float32; values outside [-1, 1] clipped first)."""
        return window_map(self.window_hu).from_unit(unit.detach().float().cpu().numpy(), clip=True)

    @torch.no_grad()
    def encode(self, unit: torch.Tensor) -> torch.Tensor:
        """``(B, 1, Z, Y, X)`` in [-1, 1] → scaled latent ``(B, C, Z/f, Y/f, X/f)``."""
        return self.network.encode(unit) * self.latent_scale

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Scaled latent ``(B, C, z, y, x)`` → image ``(B, 1, Z, Y, X)`` in [-1, 1] (quantized first)."""
        return self.network.decode_stage_2_outputs(latent / self.latent_scale)


def load_autoencoder(folder: str | Path, device: str | torch.device = "cpu") -> LatentCodec:
    """Load ``models/autoencoder/`` (config.json + weights.safetensors) as a :class:`LatentCodec`."""
    folder = Path(folder)
    config = read_model_config(folder, kind=MODEL_KIND)
    if "latent_scale" not in config:
        raise InputError("config.json has no latent_scale: training did not finish; run train-autoencoder again", folder)
    with model_config_errors(folder):
        network = build_autoencoder(config["arguments"])
        window_hu = tuple(float(v) for v in config["window_hu"])
        latent_scale = float(config["latent_scale"])
        factor = downsample_factor(config["arguments"])
    load_weights(network, folder / WEIGHTS_NAME)
    network.to(device).eval()
    return LatentCodec(network=network, window_hu=window_hu, latent_scale=latent_scale, factor=factor)  # type: ignore[arg-type]
