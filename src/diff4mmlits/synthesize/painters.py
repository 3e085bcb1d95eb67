"""The tumor painters and their loaders: paint new tumors into a normal case (the segmenter calls it on the fly).

    painter = load_painter(RunFolder("runs/demo"), method="ldm", mode="profile", device="cpu")
    synthetic = painter.paint(normal_case, np.random.default_rng(seed))   # a Case, label 0/1/2

A painter takes a tumor-free, registered :class:`Case` (phases on the label's grid, label > 0 =
liver) and returns a :class:`Case` with the same id, phases and grid: the phases with the new
tumors and the label liver (1) + tumor (2). Every random choice comes from the generator passed
in (the contract: :class:`~diff4mmlits.synthesize.painter.TumorPainter`). ``PAINTERS`` maps a method
name to a loader ``(run, mode, device) -> TumorPainter``: ``ldm`` (the paper's latent diffusion),
``handcrafted`` and ``cut`` (:mod:`diff4mmlits.synthesize.cut_painter`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from diff4mmlits import PHASES
from diff4mmlits.checkpoint import WEIGHTS_NAME, file_sha256, read_model_config
from diff4mmlits.config import Config
from diff4mmlits.data.case import Case
from diff4mmlits.data.intensity import window_map
from diff4mmlits.distributed import resolve_device
from diff4mmlits.errors import InputError
from diff4mmlits.files import write_json_atomic
from diff4mmlits.runfolder import RunFolder
from diff4mmlits.synthesize.autoencoder import LatentCodec, load_autoencoder
from diff4mmlits.synthesize.blend import noise_sigma_hu, set_noise_inside
from diff4mmlits.synthesize.config import SynthesizeConfig
from diff4mmlits.synthesize.contrast import TumorContrast, measure_tumor_contrasts, median_noise_ratio
from diff4mmlits.synthesize.crops import masked_unit
from diff4mmlits.synthesize.diffusion import (
    LatentDiffusion,
    build_scheduler,
    joint_condition,
    load_diffusion,
    mask_to_latent,
    paper_condition,
)
from diff4mmlits.synthesize.handcrafted import HandcraftedPainter
from diff4mmlits.synthesize.painter import TumorPainter
from diff4mmlits.synthesize.painting import paint_tumors
from diff4mmlits.synthesize.quality import quality_control
from diff4mmlits.synthesize.sampling import denoise, reverse_timesteps, start_latent

log = logging.getLogger(__name__)


@dataclass
class LatentDiffusionPainter:
    """The paper's Multimodal CT Synthesizer: latent diffusion conditioned on the tumor mask.

    Per tumor: the crop's phases are windowed, masked with the dilated tumor mask and encoded; the
    denoiser runs DDIM from Gaussian noise with ``[c, m]`` as condition (and, in profile and joint
    mode, the drawn enhancement profile); the latents are decoded and blended back. Paper and
    profile mode: the phases form one batch with their phase as class label and the *same* initial
    noise. Joint mode: one multi-channel latent for the four phase slots. With
    ``calibrate_contrast`` each phase is then shifted inside the tumor to the drawn profile.

    Attributes:
        codec: the trained autoencoder.
        diffusion: the trained denoiser (its ``mode`` decides paper or joint).
        config: the ``synthesize`` section (tumor masks, DDIM steps and η, feather).
        close_vox, dilate_vox: the condition mask's closing and dilation (as at training).
    """

    codec: LatentCodec
    diffusion: LatentDiffusion
    config: SynthesizeConfig
    close_vox: int = 5
    dilate_vox: int = 3
    tumor_noise_ratio: dict[str, float] | None = None
    """Phase → the real tumors' voxel noise over their liver's (``synthesize.tumor_noise: real``)."""

    @property
    def device(self) -> torch.device:
        return self.codec.device

    def paint(self, normal: Case, rng: np.random.Generator) -> Case:
        """The synthetic case: ``normal``'s phases with new tumors and the label 0/1/2 on the same grid."""
        return self.paint_with_provenance(normal, rng)[0]

    def paint_with_provenance(self, normal: Case, rng: np.random.Generator) -> tuple[Case, dict[str, Any]]:
        """:meth:`paint`, plus what made the case (tumor parameters, noise seeds, steps)."""
        real = self.diffusion.real_tumors
        case, provenance = paint_tumors(
            normal, rng, self.paint_crop, self.config.tumor, self.diffusion.crop_vox, self.config.feather_mm,
            self.close_vox, self.dilate_vox, self.diffusion.largest_real_radius_mm, real_tumors=real,
            quality=quality_control(self.config, real), retries=self.config.quality_retries,
            profile_hu=self.config.profile_hu, calibrate=self.config.calibrate_contrast,
            calibrate_edge=self.config.calibrate_edge,
        )
        sampling = ({"sampler": "ddim", "ddim_steps": self.config.ddim_steps, "ddim_eta": self.config.ddim_eta,
                     "strength": self.config.strength}
                    if self.config.sampler == "ddim" else {"sampler": "ddpm", "steps": self.diffusion.schedule["num_train_timesteps"]})
        return case, {"method": "ldm", "mode": self.diffusion.mode, "calibrate_contrast": self.config.calibrate_contrast,
                      "calibrate_edge": self.config.calibrate_edge,
                      **sampling, **provenance}

    def paint_crop(self, crops_hu: dict[str, np.ndarray], condition: np.ndarray, tumor: np.ndarray,
                   liver: np.ndarray, rng: np.random.Generator, profile_hu: dict[str, float] | None = None,
                   ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Synthesize every phase of one ``(c, c, c)`` crop (HU in, HU out) with the enhancement ``profile_hu``."""
        seed = int(rng.integers(2**63 - 1))
        generator = torch.Generator(device=self.device).manual_seed(seed)
        names = list(crops_hu)
        window = window_map(self.codec.window_hu)
        unit = np.stack([window.to_unit(crops_hu[name], clip_input=True) for name in names])[:, None]
        masked = torch.from_numpy(masked_unit(unit, condition[None, None])).to(self.device)
        condition_latent = self.codec.encode(masked)
        mask_latent = mask_to_latent(torch.from_numpy(condition[None, None]).to(self.device), self.codec.factor)
        profile = profile_hu or {}
        contrast = torch.tensor([profile.get(name, 0.0) for name in names], dtype=torch.float32, device=self.device)
        latents = self.sample_latents(names, condition_latent, mask_latent, generator, contrast)
        decoded = self.codec.to_hu(self.codec.decode(latents))
        painted, added, levels, tumor_noise = {}, {}, {}, {}
        background = liver & ~ndimage.binary_dilation(tumor, np.ones((3, 3, 3), bool), iterations=2)
        outside = liver & ~condition  # the normal liver the painted crop's noise is matched to
        for i, name in enumerate(names):
            painted[name] = decoded[i, 0]
            if self.config.match_background and background.sum() >= 8:
                # the autoencoder's reconstruction may sit a few HU off the normal CT: level it, or the
                # blend shows a halo (a seam that quality control rejects)
                levels[name] = float(np.median(crops_hu[name][background] - painted[name][background]))
                painted[name] = (painted[name] + levels[name]).astype(np.float32)
            if self.config.match_noise:
                liver_noise = noise_sigma_hu(crops_hu[name], outside)
                painted[name], added[name] = self.match_noise(painted[name], crops_hu[name], outside, rng,
                                                              self.config.noise_texture, liver_noise)
                if self.tumor_noise_ratio and name in self.tumor_noise_ratio:
                    target = self.tumor_noise_ratio[name] * liver_noise
                    painted[name] = set_noise_inside(painted[name], tumor, target, rng)
                    tumor_noise[name] = round(target, 2)
        record = {"noise_seed": seed, **({"added_noise_hu": added} if added else {}),
                  **({"tumor_noise_hu": tumor_noise} if tumor_noise else {}),
                  **({"background_shift_hu": {k: round(v, 2) for k, v in levels.items()}} if levels else {})}
        return painted, record

    @staticmethod
    def match_noise(decoded: np.ndarray, normal: np.ndarray, region: np.ndarray, rng: np.random.Generator,
                    texture: str = "white", normal_noise_hu: float | None = None) -> tuple[np.ndarray, float]:
        """Add noise so the decoded crop's noise level in ``region`` matches the normal CT's (HU):
        white noise, or (``texture="scan"``) the normal crop's own fine residual (crop minus its
        1-voxel Gaussian blur) at the same voxels, scaled to the missing level. ``normal_noise_hu``:
        the normal CT's level in ``region`` when the caller has measured it already."""
        if normal_noise_hu is None:
            normal_noise_hu = noise_sigma_hu(normal, region)
        missing = normal_noise_hu ** 2 - noise_sigma_hu(decoded, region) ** 2
        sigma = float(np.sqrt(max(missing, 0.0)))
        if texture == "scan" and region.sum() >= 8:
            residual = normal - ndimage.gaussian_filter(normal.astype(np.float32), 1.0)
            spread = float(residual[region].std())
            pattern = residual / spread if spread > 1e-6 else np.zeros_like(residual)
        else:
            pattern = rng.standard_normal(decoded.shape).astype(np.float32)
        noisy = decoded + sigma * pattern
        return noisy.astype(np.float32), round(sigma, 2)

    @torch.no_grad()
    def sample_latents(self, names: list[str], condition_latent: torch.Tensor, mask_latent: torch.Tensor,
                       generator: torch.Generator, contrast_hu: torch.Tensor | None = None) -> torch.Tensor:
        """DDIM-sample the clean latents ``(P, C, l, l, l)`` of the phases ``names`` (in that order).

        Args:
            names: the phases present, e.g. ``["NC", "PVP"]``.
            condition_latent: ``(P, C, l, l, l)`` latents of the masked crops, same order.
            mask_latent: ``(1, 1, l, l, l)``.
            generator: the only source of noise.
            contrast_hu: ``(P,)`` the tumor-to-liver contrast to paint per phase, HU (profile and
                joint mode; zeros when ``None``).
        """
        if contrast_hu is None:
            contrast_hu = torch.zeros(len(names), device=self.device)
        channels, grid = self.codec.latent_channels, tuple(condition_latent.shape[2:])
        clip = self.diffusion.latent_clip if self.config.clip_latent else None
        scheduler = build_scheduler(self.diffusion.schedule, self.config.sampler, clip)
        steps = self.config.ddim_steps if self.config.sampler == "ddim" else int(self.diffusion.schedule["num_train_timesteps"])
        timesteps = reverse_timesteps(scheduler, steps, self.config.strength, self.device)
        network, strength, eta = self.diffusion.network, self.config.strength, self.config.ddim_eta
        if self.diffusion.mode in ("paper", "profile"):
            count = len(names)
            noise = torch.randn((1, channels, *grid), generator=generator, device=self.device).expand(count, -1, -1, -1, -1)
            start = start_latent(scheduler, noise.contiguous(), condition_latent, timesteps, strength)
            labels = torch.tensor([PHASES.index(name) for name in names], device=self.device)
            condition = paper_condition(condition_latent, mask_latent.expand(count, -1, -1, -1, -1),
                                        contrast_hu if self.diffusion.mode == "profile" else None)
            return denoise(network, scheduler, start, condition, timesteps, generator, class_labels=labels, eta=eta)
        slots = torch.zeros((1, len(PHASES), channels, *grid), device=self.device)
        present = torch.zeros((1, len(PHASES)), device=self.device)
        profile = torch.zeros((1, len(PHASES)), device=self.device)
        for i, name in enumerate(names):
            slots[0, PHASES.index(name)] = condition_latent[i]
            present[0, PHASES.index(name)] = 1.0
            profile[0, PHASES.index(name)] = contrast_hu[i]
        noise = torch.randn((1, len(PHASES) * channels, *grid), generator=generator, device=self.device)
        start = start_latent(scheduler, noise, slots.flatten(1, 2), timesteps, strength)
        condition = joint_condition(slots, mask_latent, present, profile)
        latent = denoise(network, scheduler, start, condition, timesteps, generator, eta=eta)
        latent = latent.view(1, len(PHASES), channels, *grid)
        return torch.stack([latent[0, PHASES.index(name)] for name in names])


# --- loading painters from a run folder ---------------------------------------------------------
def load_ldm_painter(run: RunFolder, mode: str = "profile", device: str | torch.device = "cpu",
                     config: Config | None = None) -> LatentDiffusionPainter:
    """The diffusion painter from ``models/autoencoder`` and ``models/diffusion[-<mode>]``."""
    config = config or run.load_config()
    device = resolve_device(str(device))
    diffusion_folder = run.diffusion_dir(mode)
    if not (diffusion_folder / WEIGHTS_NAME).is_file():
        raise InputError(f"no trained {mode}-mode synthesizer; run 'diff4mmlits train-synthesizer --run {run.root} --mode {mode}'",
                         diffusion_folder)
    codec = load_autoencoder(run.autoencoder_dir, device)
    diffusion = load_diffusion(diffusion_folder, device)
    stored = read_model_config(diffusion_folder)
    expected = stored.get("autoencoder_sha256")
    actual = file_sha256(run.autoencoder_dir / WEIGHTS_NAME)
    if expected and expected != actual:
        raise InputError("the autoencoder changed since the synthesizer was trained; run train-synthesizer again", diffusion_folder)
    ratio = None
    if config.synthesize.tumor_noise == "real":
        ratio = median_noise_ratio(real_tumor_contrasts(run))
        log.info("synthesize: painted tumors get the real tumors' noise relative to the liver: %s",
                 ", ".join(f"{k} {v:.2f}" for k, v in ratio.items()) or "none measurable (the liver's kept)")
    return LatentDiffusionPainter(codec=codec, diffusion=diffusion, config=config.synthesize,
                                  close_vox=int(stored.get("close_kernel_vox", config.inpaint.close_kernel_vox)),
                                  dilate_vox=int(stored.get("dilate_kernel_vox", config.inpaint.dilate_kernel_vox)),
                                  tumor_noise_ratio=ratio)


def real_tumor_contrasts(run: RunFolder) -> list[TumorContrast]:
    """The real tumors of the registered training cases, measured once and kept in ``models/handcrafted/contrast.json``.

    The cache is reused while the ``register`` stage's stamp is unchanged.
    """
    cache = run.handcrafted_dir / "contrast.json"
    key = (run.read_stamp("register") or {}).get("fingerprint")
    if cache.is_file():
        stored = json.loads(cache.read_text())
        if stored.get("register_fingerprint") == key and key is not None and all("noise_ratio" in t for t in stored["tumors"]):
            return [TumorContrast.from_dict(t) for t in stored["tumors"]]  # (a cache without noise ratios is measured again)
    tumors = [t for case in run.read_cases("registered", "train") for t in measure_tumor_contrasts(case)]
    write_json_atomic(cache, {"register_fingerprint": key, "tumors": [t.to_dict() for t in tumors]})
    return tumors


def load_handcrafted_painter(run: RunFolder, mode: str = "paper", device: str | torch.device = "cpu",
                             config: Config | None = None) -> HandcraftedPainter:
    """The handcrafted baseline, its contrasts measured from the run's registered training cases (``mode`` is unused)."""
    config = config or run.load_config()
    return HandcraftedPainter(real_tumors=real_tumor_contrasts(run), config=config.synthesize,
                              crop_vox=config.diffusion.crop_vox, close_vox=config.inpaint.close_kernel_vox,
                              dilate_vox=config.inpaint.dilate_kernel_vox)


def load_cut_painter(run: RunFolder, mode: str = "paper", device: str | torch.device = "cpu",
                     config: Config | None = None) -> TumorPainter:
    """The CUT painter (the paper's Table V baseline), trained by ``train-translator --painter``."""
    from diff4mmlits.synthesize.cut_painter import load_cut_painter as load

    painter = load(run, mode, device)
    painter.real_tumors = real_tumor_contrasts(run)
    if config is not None:
        painter.config = config.synthesize
    return painter


PainterLoader = Callable[[RunFolder, str, "str | torch.device", "Config | None"], TumorPainter]
PAINTERS: dict[str, PainterLoader] = {
    "ldm": load_ldm_painter,
    "handcrafted": load_handcrafted_painter,
    "cut": load_cut_painter,
}
"""Method name → loader ``(run, mode, device, config) -> TumorPainter``."""


def load_painter(run: RunFolder, method: str = "ldm", mode: str = "profile", device: str | torch.device = "cpu",
                 config: Config | None = None) -> TumorPainter:
    """The painter of ``method`` (``ldm``, ``handcrafted``, …) trained or measured in ``run``.

    ``config``: the settings it paints with — the command's, with its ``--set`` overrides; default
    the run's saved ``config.yaml``.
    """
    if method not in PAINTERS:
        raise InputError(f"--method {method!r}: choose one of {', '.join(PAINTERS)}")
    return PAINTERS[method](run, mode, device, config)
