"""Training the FFC inpainter as LaMa trains it (paper §III-A: "followed the training strategy of Suvorov et al.").

One step: draw a batch of crops with random holes (:mod:`~diff4mmlits.inpaint.slices`), predict,
composite, then

1. generator: ``w_hole·L1(hole) + w_known·L1(known) + w_adv·softplus(−D(inpainted)) + w_fm·FM``
   (+ an optional perceptual term), with the discriminator frozen;
2. discriminator: non-saturating loss with inpainted pixels as fake, + ``w_r1·R1`` on real slices.

Adam for both (LaMa: lr 1e-3 for the generator, 1e-4 for the discriminator). On CUDA the forward
passes run under float16 autocast with a gradient scaler per network. Under ``torchrun`` the
generator is wrapped in DDP; the discriminator's gradients are averaged across processes by hand
after each backward (the R1 penalty needs a double backward, which DDP's reducer does not support),
which is what DDP would do. Only rank 0 writes the model folder, the log and the curves.

The model folder (``RUN/models/inpainter/``): ``config.json``, ``weights.safetensors`` (generator),
``discriminator.safetensors``, ``training_state.pt`` (optimisers, scalers, step, log; loaded with
``weights_only=True``), ``log.csv``, ``curves.png``. With ``ema_decay`` > 0 the saved generator is
the exponential moving average of the trained weights (what inference uses; it smooths the
step-to-step jitter of GAN training) and ``generator_train.safetensors`` holds the raw weights for
resuming. Batches are drawn from a generator seeded by
``(seed, rank, step)``, so a resumed run sees the batches an uninterrupted one would have seen.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from diff4mmlits import PHASES
from diff4mmlits.checkpoint import (
    WEIGHTS_NAME,
    load_training_state,
    load_weights,
    read_model_config,
)
from diff4mmlits.config import Config
from diff4mmlits.data.case import Case
from diff4mmlits.distributed import DistributedContext, init_distributed, wrap_ddp
from diff4mmlits.errors import InputError
from diff4mmlits.inpaint.config import InpaintConfig
from diff4mmlits.inpaint.losses import (
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    masked_l1,
    r1_penalty,
)
from diff4mmlits.inpaint.network import MODEL_KIND, FFCInpainter, InpainterArchitecture, composite
from diff4mmlits.inpaint.slices import TrainingBatch, build_sources, monitor_batch, sample_batch
from diff4mmlits.progress import progress
from diff4mmlits.training import (
    LOG_STATE_KEY,
    CurveGroup,
    RunningMean,
    TrainingLog,
    autocast,
    grad_scaler,
    mixed_precision_checked,
    save_checkpoint,
    step_rng,
)

log = logging.getLogger(__name__)

DISCRIMINATOR_NAME = "discriminator.safetensors"
RAW_GENERATOR_NAME = "generator_train.safetensors"
LOSS_NAMES = ("l1_hole", "l1_known", "adv_g", "feature_matching", "perceptual", "adv_d", "r1", "g_total", "d_total")
LOG_COLUMNS = ("step", *LOSS_NAMES, "monitor_mae_hu", "seconds")
CURVES = (
    CurveGroup("L1 (window units)", ("l1_hole", "l1_known")), CurveGroup("adversarial", ("adv_g", "adv_d")),
    CurveGroup("R1 penalty", ("r1",)), CurveGroup("feature matching", ("feature_matching",)),
    CurveGroup("monitor MAE in holes (HU)", ("monitor_mae_hu",)),
)
"""The panels of ``curves.png``."""


def architecture_from_config(config: InpaintConfig) -> InpainterArchitecture:
    """The generator's architecture from the inpaint settings."""
    return InpainterArchitecture(
        base_channels=config.base_channels, max_channels=config.max_channels, n_downsampling=config.n_downsampling,
        n_blocks=config.n_blocks, ratio_global=config.ratio_global, enable_lfu=config.enable_lfu, phases=PHASES,
        coarse_residual=config.coarse_residual, coarse_iterations=config.coarse_iterations,
        context_slices=config.context_slices,
    )


def build_discriminator(config: InpaintConfig, n_phases: int = len(PHASES)) -> nn.Module:
    """MONAI's PatchGAN discriminator (2D); it sees the slice and the phase one-hot planes."""
    from monai.networks.nets import PatchDiscriminator

    return PatchDiscriminator(spatial_dims=2, channels=config.discriminator_channels, in_channels=1 + n_phases,
                              out_channels=1, num_layers_d=config.discriminator_layers)


def discriminator_input(image: torch.Tensor, phase_index: torch.Tensor, n_phases: int) -> torch.Tensor:
    """``(B, 1 + n_phases, Y, X)``: the slice and its phase as one-hot planes."""
    one_hot = torch.nn.functional.one_hot(phase_index.long(), n_phases).to(image.dtype)
    return torch.cat([image, one_hot[:, :, None, None].expand(-1, -1, *image.shape[-2:])], dim=1)


def _perceptual_loss(config: InpaintConfig) -> nn.Module | None:
    """MONAI's ResNet-50 perceptual loss from a local state dict, or ``None`` when off (the default)."""
    if config.perceptual_weight <= 0:
        return None
    if not config.perceptual_weights or not Path(config.perceptual_weights).is_file():
        raise InputError("inpaint.perceptual_weight > 0 needs inpaint.perceptual_weights: the path of a local "
                         "ResNet-50 state dict (nothing is downloaded)")
    try:
        import torchvision  # noqa: F401
    except ImportError:
        raise InputError("the perceptual loss needs torchvision; install it or set inpaint.perceptual_weight=0") from None
    from monai.losses import PerceptualLoss

    return PerceptualLoss(spatial_dims=2, network_type="resnet50", pretrained=True,
                          pretrained_path=str(config.perceptual_weights))


def _average_gradients(module: nn.Module, context: DistributedContext) -> None:
    """All-reduce the gradients of ``module`` to their mean over the processes (what DDP does)."""
    if not context.is_distributed:
        return
    for parameter in module.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
            parameter.grad /= context.world_size


def _scaled_step(scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer) -> bool:
    """``scaler.step`` and ``scaler.update``; whether the update was skipped because the gradient was
    not finite (the scaler then lowers its scale; always ``False`` without a float16 scaler)."""
    scale = scaler.get_scale() if scaler.is_enabled() else 1.0
    scaler.step(optimizer)
    scaler.update()
    return scaler.is_enabled() and scaler.get_scale() < scale


class InpaintingGAN:
    """The generator, the discriminator, their optimisers and gradient scalers; one :meth:`train_step` at a time."""

    def __init__(self, config: InpaintConfig, context: DistributedContext | None = None,
                 memory_format: torch.memory_format = torch.channels_last) -> None:
        """``memory_format``: the networks' and batches' layout. Channels-last (NHWC) is the one oneDNN's
        and cuDNN's 2D convolutions compute in: on a CPU with bfloat16 hardware a step runs 1.12× as
        fast as in NCHW at the demo's crops (``benchmarks/bench_inpaint.py`` prints the ratio)."""
        self.config = config
        self.memory_format = memory_format
        self.context = context or DistributedContext()
        self.device = self.context.device
        self.architecture = architecture_from_config(config)
        self.n_phases = len(self.architecture.phases)
        self.generator = FFCInpainter(self.architecture).to(self.device, memory_format=memory_format)
        self.discriminator = build_discriminator(config, self.n_phases).to(self.device, memory_format=memory_format)
        self.optimizer_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr_generator)
        self.optimizer_d = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr_discriminator)
        self.amp = bool(config.mixed_precision)  # float16 autocast on CUDA (one scaler per network), bfloat16 on a CPU
        self.scaler_g = grad_scaler(self.device, self.amp, torch.float16)
        self.scaler_d = grad_scaler(self.device, self.amp, torch.float16)
        self.amp_checked: bool | None = None
        """Whether autocast is used, decided on the first batch (``None`` before)."""
        self.perceptual = _perceptual_loss(config)
        if self.perceptual is not None:
            self.perceptual = self.perceptual.to(self.device)
        self.generator_ddp = wrap_ddp(self.generator, self.context)
        self.generator_ema: FFCInpainter | None = None
        if config.ema_decay > 0:
            self.generator_ema = copy.deepcopy(self.generator).eval().requires_grad_(False)

    @property
    def inference_generator(self) -> FFCInpainter:
        """The generator that is saved and used for inference: the moving average when there is one."""
        return self.generator_ema if self.generator_ema is not None else self.generator

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.generator_ema is None:
            return
        for average, current in zip(self.generator_ema.parameters(), self.generator.parameters()):
            average.lerp_(current, 1.0 - self.config.ema_decay)
        for average, current in zip(self.generator_ema.buffers(), self.generator.buffers()):
            average.copy_(current)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.amp and bool(self.amp_checked), torch.float16)

    def _check_mixed_precision(self, b: TrainingBatch, real_d_input: torch.Tensor) -> None:
        """Once, on the first batch: whether this device trains both networks under autocast
        (:func:`mixed_precision_checked`: on a CPU, only where bfloat16 gives float32's gradients)."""
        networks = torch.nn.ModuleDict({"generator": self.generator, "discriminator": self.discriminator})

        def forward() -> None:
            self.generator(b.image, b.hole, b.phase_index, b.context, b.context_hole)
            self.discriminator(real_d_input)

        self.amp_checked = mixed_precision_checked(self.device, self.amp, networks, forward, "train-inpainter")

    def train_step(self, batch: TrainingBatch, apply_r1: bool = True) -> dict[str, float]:
        """One generator step then one discriminator step; the losses as floats, and ``skipped`` 1.0
        when the float16 gradient scaler skipped either network's update (a non-finite gradient).

        ``apply_r1=False`` skips the R1 penalty this step (lazy regularisation: with
        ``r1_every_steps`` = k, the penalty runs every k-th step with k times the weight).
        """
        cfg = self.config
        b = batch.to(self.device, self.memory_format)
        self.generator_ddp.train()
        self.discriminator.train()
        real_d_input = discriminator_input(b.image, b.phase_index, self.n_phases)
        if self.amp_checked is None:
            self._check_mixed_precision(b, real_d_input)

        # 1. generator (discriminator frozen)
        self.discriminator.requires_grad_(False)
        with self._autocast():
            prediction = self.generator_ddp(b.image, b.hole, b.phase_index, b.context, b.context_hole)
            inpainted = composite(prediction.float(), b.image, b.hole)
            fake_out = self.discriminator(discriminator_input(inpainted, b.phase_index, self.n_phases))
            with torch.no_grad():
                real_out = self.discriminator(real_d_input)
        l1_hole = masked_l1(prediction.float(), b.image, b.supervised_hole)
        l1_known = masked_l1(prediction.float(), b.image, b.known)
        adv_g = generator_adversarial_loss(fake_out[-1].float(), b.valid)
        fm = feature_matching_loss(fake_out[:-1], real_out[:-1], b.valid)
        perceptual = torch.zeros((), device=self.device)
        if self.perceptual is not None:
            # MONAI's ResNet-50 similarity wants [0, 1] inputs and returns one value per image
            perceptual = self.perceptual((inpainted.float() + 1) / 2, (b.image + 1) / 2).mean()
        g_total = (cfg.l1_hole_weight * l1_hole + cfg.l1_known_weight * l1_known + cfg.adversarial_weight * adv_g
                   + cfg.feature_matching_weight * fm + cfg.perceptual_weight * perceptual)
        self.optimizer_g.zero_grad(set_to_none=True)
        self.scaler_g.scale(g_total).backward()
        skipped_g = _scaled_step(self.scaler_g, self.optimizer_g)
        self._update_ema()

        # 2. discriminator: inpainted pixels are fake, R1 on real slices
        self.discriminator.requires_grad_(True)
        use_r1 = apply_r1 and cfg.r1_weight > 0
        real_in = real_d_input.detach().requires_grad_(use_r1)
        # R1 differentiates the discriminator's output with respect to its input, then that again with
        # respect to its weights (a double backward). Under float16 its gradient of 1 per logit times
        # the scaler's 2**16 overflows, and on a GPU the paper preset's discriminator loss was NaN from
        # about step 150 on; so the real slices go through the discriminator in float32 when R1 is computed.
        with torch.autocast(device_type=self.device.type, enabled=False) if use_r1 else self._autocast():
            real_logits = self.discriminator(real_in)[-1]
        with self._autocast():
            fake_logits = self.discriminator(discriminator_input(inpainted.detach(), b.phase_index, self.n_phases))[-1]
        adv_d = discriminator_loss(real_logits.float(), fake_logits.float(), b.hole, b.valid)
        r1 = r1_penalty(real_logits, real_in) if use_r1 else torch.zeros((), device=self.device)
        d_total = adv_d + cfg.r1_weight * cfg.r1_every_steps * r1
        self.optimizer_d.zero_grad(set_to_none=True)
        self.scaler_d.scale(d_total).backward()
        _average_gradients(self.discriminator, self.context)
        skipped = _scaled_step(self.scaler_d, self.optimizer_d) or skipped_g
        values = {"l1_hole": l1_hole, "l1_known": l1_known, "adv_g": adv_g, "feature_matching": fm,
                  "perceptual": perceptual, "adv_d": adv_d, "r1": r1, "g_total": g_total, "d_total": d_total}
        return {**{name: float(value.detach()) for name, value in values.items()}, "skipped": float(skipped)}

    @torch.no_grad()
    def monitor_mae_hu(self, batch: TrainingBatch, window_hu: tuple[float, float]) -> float:
        """Mean absolute error (HU) of the generator inside the supervised holes of a fixed batch."""
        b = batch.to(self.device, self.memory_format)
        generator = self.inference_generator
        generator.eval()
        with self._autocast():
            prediction = generator(b.image, b.hole, b.phase_index, b.context, b.context_hole).float()
        scale = (window_hu[1] - window_hu[0]) / 2.0
        return float(masked_l1(prediction, b.image, b.supervised_hole)) * scale

    # --- state ----------------------------------------------------------------------------
    def state(self) -> dict:
        return {"optimizer_g": self.optimizer_g.state_dict(), "optimizer_d": self.optimizer_d.state_dict(),
                "scaler_g": self.scaler_g.state_dict(), "scaler_d": self.scaler_d.state_dict()}

    def load_state(self, state: dict) -> None:
        self.optimizer_g.load_state_dict(state["optimizer_g"])
        self.optimizer_d.load_state_dict(state["optimizer_d"])
        if self.amp and state.get("scaler_g"):
            self.scaler_g.load_state_dict(state["scaler_g"])
            self.scaler_d.load_state_dict(state["scaler_d"])


@dataclass(frozen=True)
class TrainingResult:
    """Where a training run left its files, and how far it got."""

    model_dir: Path
    steps: int
    last_row: dict[str, float]


def model_config(gan: InpaintingGAN, config: Config, step: int, case_ids: Sequence[str], extra: dict | None = None) -> dict:
    """The model folder's ``config.json``: what builds the network and how it was trained."""
    return {
        **(extra or {}),
        "kind": MODEL_KIND,
        "architecture": gan.architecture.to_dict(),
        "window_hu": list(config.inpaint.window_hu),
        "steps_done": step,
        "preset": config.preset,
        "seed": config.seed,
        "training_cases": list(case_ids),
        "inpaint": config.inpaint.model_dump(mode="json"),
    }


def check_architecture(folder: Path, architecture: InpainterArchitecture) -> dict:
    """Read a model folder's ``config.json`` and require the same architecture; return the config."""
    saved = read_model_config(folder, kind=MODEL_KIND)
    theirs = InpainterArchitecture.from_dict(saved.get("architecture", {}))
    if theirs != architecture:
        diff = {k: (v, getattr(architecture, k)) for k, v in theirs.to_dict().items() if v != architecture.to_dict()[k]}
        raise InputError(f"its network differs from the configured one (saved vs configured: {diff}); "
                         "set the inpaint network settings to match", folder)
    return saved


def _save_checkpoint(folder: Path, gan: InpaintingGAN, config: Config, step: int, training_log: TrainingLog,
                     case_ids: Sequence[str], extra: dict | None) -> None:
    others = {RAW_GENERATOR_NAME: gan.generator} if gan.generator_ema is not None else {}
    save_checkpoint(folder, gan.inference_generator, model_config(gan, config, step, case_ids, extra),
                    {"step": step, **gan.state()}, training_log, others={**others, DISCRIMINATOR_NAME: gan.discriminator},
                    final=step >= config.inpaint.steps)


def train_inpainter(
    cases: Sequence[Case],
    config: Config,
    out_dir: str | Path,
    monitor_cases: Sequence[Case] = (),
    device: str | None = None,
    resume: bool = False,
    init_from: str | Path | None = None,
    extra_config: dict | None = None,
) -> TrainingResult:
    """Train the FFC inpainter on registered, labelled ``cases``; write the model folder ``out_dir``.

    Args:
        cases: registered cases (every phase on the annotated grid) with labels; their closed and
            dilated tumors are hidden and never targets.
        config: the run's configuration (``config.inpaint``, ``config.seed``).
        out_dir: the model folder (``RUN/models/inpainter``).
        monitor_cases: cases whose slices give the fixed monitor batch of the log (default: ``cases``).
        device: ``auto``/``cpu``/``cuda[:N]``; default the config's.
        resume: continue from ``out_dir/training_state.pt`` when there is one.
        init_from: a model folder whose weights start the training (fine-tuning, as the paper does).
        extra_config: more entries for the model folder's ``config.json`` (the stage's training key).
    """
    cfg = config.inpaint
    out_dir = Path(out_dir)
    context = init_distributed(device or config.device)
    torch.manual_seed(config.seed)
    gan = InpaintingGAN(cfg, context)
    window = tuple(cfg.window_hu)
    mask_args = dict(close_kernel_vox=cfg.close_kernel_vox, dilate_kernel_vox=cfg.dilate_kernel_vox,
                     close_kernel_mm=cfg.close_kernel_mm, dilate_kernel_mm=cfg.dilate_kernel_mm)
    sources = build_sources(cases, gan.architecture.phases, window, **mask_args)
    monitor_sources = sources
    if monitor_cases:  # usually a subset of the training cases: reuse their sources
        built = {source.case_id for source in sources}
        monitor_ids = {case.case_id for case in monitor_cases}
        others = [case for case in monitor_cases if case.case_id not in built]
        monitor_sources = [s for s in sources if s.case_id in monitor_ids] + (
            build_sources(others, gan.architecture.phases, window, **mask_args) if others else [])
    monitor = monitor_batch(monitor_sources, cfg.monitor_slices, cfg.crop_vox, seed=config.seed + 1,
                            context_slices=cfg.context_slices)
    case_ids = [case.case_id for case in cases]

    start = 0
    training_log = TrainingLog(out_dir, LOG_COLUMNS, groups=CURVES)
    state = load_training_state(out_dir, map_location=gan.device) if resume else None
    if state is not None:
        check_architecture(out_dir, gan.architecture)
        load_weights(gan.inference_generator, out_dir / WEIGHTS_NAME)
        if gan.generator_ema is not None:
            raw = out_dir / RAW_GENERATOR_NAME
            load_weights(gan.generator, raw if raw.is_file() else out_dir / WEIGHTS_NAME)
        load_weights(gan.discriminator, out_dir / DISCRIMINATOR_NAME)
        gan.load_state(state)
        start = int(state["step"])
        training_log.resume(start, state.get(LOG_STATE_KEY))
        log.info("train-inpainter: resuming at step %d of %d", start, cfg.steps)
    elif init_from is not None:
        init_from = Path(init_from)
        check_architecture(init_from, gan.architecture)
        load_weights(gan.generator, init_from / WEIGHTS_NAME)
        if gan.generator_ema is not None:
            gan.generator_ema.load_state_dict(gan.generator.state_dict())
        if (init_from / DISCRIMINATOR_NAME).is_file():
            load_weights(gan.discriminator, init_from / DISCRIMINATOR_NAME)
        log.info("train-inpainter: starting from the weights in %s", init_from)

    running = RunningMean()
    started = time.perf_counter()
    bar = progress(range(start, cfg.steps), desc="train-inpainter", total=max(0, cfg.steps - start), unit="step")
    done = start
    for step in bar:
        rng = step_rng(config.seed, context.rank, step)
        batch = sample_batch(sources, rng, cfg.batch_size, cfg.crop_vox, cfg.liver_slice_fraction,
                             cfg.blob_mask_fraction, cfg.max_hole_fraction, cfg.context_slices)
        losses = gan.train_step(batch, apply_r1=step % cfg.r1_every_steps == 0)
        if losses["skipped"]:  # the scaler skipped a non-finite gradient: no loss of this step is an average's part
            running.add(skipped=1.0)
        else:
            running.add(**{name: value for name, value in losses.items()
                           if name != "r1" or step % cfg.r1_every_steps == 0})
        bar.set_postfix(l1=f"{losses['l1_hole']:.3f}", g=f"{losses['g_total']:.2f}", d=f"{losses['d_total']:.3f}",
                        **({"skipped": "yes"} if losses["skipped"] else {}))
        done = step + 1
        if done % cfg.log_every_steps == 0 or done == cfg.steps:
            training_log.add({
                "step": done, **running.pop(),
                "monitor_mae_hu": gan.monitor_mae_hu(monitor, window) if monitor is not None else float("nan"),
                "seconds": time.perf_counter() - started,
            })
        if context.is_main and (done % cfg.checkpoint_every_steps == 0 or done == cfg.steps):
            _save_checkpoint(out_dir, gan, config, done, training_log, case_ids, extra_config)
    if context.is_main and not (out_dir / WEIGHTS_NAME).is_file():
        _save_checkpoint(out_dir, gan, config, done, training_log, case_ids, extra_config)
    return TrainingResult(out_dir, done, training_log.last)
