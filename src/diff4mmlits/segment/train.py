"""Training the multimodal segmenter (paper §III-C, eq. 4; §IV-B), as nnU-Net users expect.

Loss ``L_seg = L_dice + γ·L_ce`` with γ = ``lambda_ce`` (0.5, the paper's), MONAI's ``DiceCELoss``
(batch Dice over the foreground classes, as nnU-Net); with DynUNet deep supervision the heads are
weighted 1, ½, ¼… and normalised. Poly learning-rate schedule stepped every iteration, gradient
norm clipped at 12, validation Dice (liver and tumor, sliding window over whole validation cases)
every ``validate_every_epochs``; the best (mean foreground Dice) and last weights are kept.

The model folder (``RUN/models/segmenter/``)::

    config.json          backbone, segment settings, run settings, epochs done
    plan.json            the plan (and the fingerprint it came from)
    weights.safetensors  last weights      best.safetensors  best weights by validation Dice
    training_state.pt    optimiser, scheduler, scaler, epoch, best metric, log rows (for --resume)
    log.csv              one row per epoch: loss, Dice, lr, time waiting for data vs computing
    curves.png           loss and validation Dice per epoch

Runs under ``torchrun`` with DDP (one process per device, gloo on CPU): each rank draws its own
samples (its rank is in the seed), validation cases are sharded and the Dice sums all-reduced, and
only rank 0 writes. Data-loading starvation is measured: the time the training loop waits for the
next batch versus the time it spends in forward/backward/step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from diff4mmlits import LABEL_TUMOR
from diff4mmlits.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    load_training_state,
    load_weights,
    read_model_config,
)
from diff4mmlits.data.case import Case
from diff4mmlits.data.measures import dice
from diff4mmlits.data.orientation import orientation_code
from diff4mmlits.distributed import DistributedContext, barrier, shard, unwrap, wrap_ddp
from diff4mmlits.errors import InputError
from diff4mmlits.files import write_json_atomic
from diff4mmlits.progress import progress
from diff4mmlits.segment.cascade import (
    LIVER_MODEL,
    crop_to_liver,
    liver_spacing,
    small_tumor_diameter_mm,
    tumor_spacing,
)
from diff4mmlits.segment.config import SegmentConfig
from diff4mmlits.segment.dataset import HybridDataset, PreparedCase, TumorPainter, prepare_case, resample_case
from diff4mmlits.segment.networks import BEST_NAME, MODEL_KIND, build_network, main_output, network_autocast
from diff4mmlits.segment.plan import (
    PLAN_FILE,
    Fingerprint,
    SegmenterPlan,
    plan_segmenter,
    read_plan,
    write_plan,
)
from diff4mmlits.segment.plan import fingerprint as fingerprint_of_cases
from diff4mmlits.segment.synthetic_pool import SyntheticPool
from diff4mmlits.threads import thread_budget, usable_cores
from diff4mmlits.training import (
    LOG_STATE_KEY,
    CurveGroup,
    TrainingLog,
    autocast,
    grad_scaler,
    half_dtype,
    mixed_precision_checked,
    rank_seed,
    save_checkpoint,
)

log = logging.getLogger(__name__)

LOG_FIELDS = ["epoch", "steps", "train_loss", "val_dice_liver", "val_dice_tumor", "val_dice_mean", "lr", "synthetic_share",
              "loader_wait_s", "compute_s", "epoch_s"]
CURVES = (CurveGroup("training loss", ("train_loss",), ylabel="Dice + γ·CE"),
          CurveGroup("validation Dice", ("val_dice_liver", "val_dice_tumor"), ylabel="Dice", ylim=(0.0, 1.0)))
"""The panels of ``curves.png``: training loss and validation Dice per epoch."""
GRAD_CLIP_NORM = 12.0


@dataclass
class TrainResult:
    """What a training run did."""

    model_dir: Path
    epochs_done: int
    best_val_dice: float | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    network: torch.nn.Module | None = None
    """The trained network (last weights, unwrapped from DDP)."""

    @property
    def loader_wait_fraction(self) -> float:
        """Share of the training loop's time spent waiting for data (0 = never starved)."""
        wait = sum(float(r["loader_wait_s"]) for r in self.rows)
        compute = sum(float(r["compute_s"]) for r in self.rows)
        return wait / max(wait + compute, 1e-9)

    @property
    def steps_per_second(self) -> float:
        seconds = sum(float(r["loader_wait_s"]) + float(r["compute_s"]) for r in self.rows)
        steps = sum(int(r.get("steps", 0)) for r in self.rows)
        return steps / max(seconds, 1e-9)


def make_loss(config: SegmentConfig) -> torch.nn.Module:
    """``Dice + lambda_ce · CE`` over logits ``(B, 3, Z, Y, X)`` and labels ``(B, 1, Z, Y, X)``."""
    from monai.losses import DiceCELoss

    return DiceCELoss(
        to_onehot_y=True, softmax=True, include_background=False, batch=config.batch_dice,
        lambda_dice=1.0, lambda_ce=config.lambda_ce, smooth_nr=1e-5, smooth_dr=1e-5,
    )


def supervised_loss(loss_fn: torch.nn.Module, output: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """The loss of a plain output ``(B, 3, ...)`` or a deep-supervision stack ``(B, H, 3, ...)``."""
    if output.ndim == label.ndim:
        return loss_fn(output, label)
    weights = torch.tensor([0.5**h for h in range(output.shape[1])])
    weights = weights / weights.sum()
    return sum(w * loss_fn(output[:, h], label) for h, w in enumerate(weights.tolist()))


def make_optimizer(model: torch.nn.Module, config: SegmentConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":  # nnU-Net's
        return torch.optim.SGD(model.parameters(), lr=config.learning_rate, momentum=0.99, nesterov=True, weight_decay=config.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)


@torch.no_grad()
def predict_logits(model: torch.nn.Module, image: np.ndarray, plan: SegmenterPlan, config: SegmentConfig, device: torch.device) -> torch.Tensor:
    """Sliding-window logits ``(1, 3, z, y, x)`` (on CPU) of one prepared image ``(4, z, y, x)``."""
    from monai.inferers import sliding_window_inference

    inputs = torch.from_numpy(np.ascontiguousarray(image))[None].to(device)
    with network_autocast(device, config):
        logits = sliding_window_inference(
            inputs, roi_size=list(plan.patch_size_vox), sw_batch_size=config.sliding_window_batch,
            predictor=lambda x: main_output(model(x)), overlap=config.sliding_window_overlap, mode="gaussian",
        )
    return logits.float().cpu()


def validate(model: torch.nn.Module, cases: Sequence[PreparedCase], plan: SegmenterPlan, config: SegmentConfig,
             context: DistributedContext) -> dict[str, float]:
    """Mean liver and tumor Dice over the validation cases (sharded over ranks, then summed)."""
    net = unwrap(model)
    was_training = net.training
    net.eval()
    sums = np.zeros(3)
    for case in shard(list(cases), context.rank + 1, context.world_size):
        pred = predict_logits(net, case.image, plan, config, context.device).argmax(1)[0].numpy()
        sums += [dice(pred > 0, case.label > 0), dice(pred == LABEL_TUMOR, case.label == LABEL_TUMOR), 1]  # 1 when both empty
    if was_training:
        net.train()
    if context.is_distributed:
        import torch.distributed as dist

        tensor = torch.tensor(sums, dtype=torch.float64, device=context.device)  # NCCL reduces CUDA tensors only
        dist.all_reduce(tensor)
        sums = tensor.cpu().numpy()
    count = max(sums[2], 1)
    liver, tumor = sums[0] / count, sums[1] / count
    return {"liver": float(liver), "tumor": float(tumor), "mean": float((liver + tumor) / 2)}


def _probe_forward(model: torch.nn.Module, plan: SegmenterPlan, config: SegmentConfig, device: torch.device):
    """A forward pass of ``model`` on one random batch of the training patch (its own generator: the
    run's random streams are untouched), for :func:`mixed_precision_checked`."""
    generator = torch.Generator().manual_seed(0)
    image = torch.randn((config.batch_size, 4, *plan.patch_size_vox), generator=generator).to(device)
    return lambda: model(image)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def _check_resumable(out_dir: Path, plan: SegmenterPlan, config: SegmentConfig) -> None:
    saved_plan = read_plan(out_dir / PLAN_FILE)
    saved = read_model_config(out_dir)
    if saved_plan.to_dict() != plan.to_dict():
        raise InputError("cannot resume: the saved plan differs from this run's (data or settings changed); train without --resume", out_dir)
    network_keys = ("backbone", "phases", "base_filters", "max_filters", "deep_supervision", "optimizer")
    old = saved.get("segment", {})
    changed = [k for k in network_keys if old.get(k) != config.model_dump(mode="json").get(k)]
    if changed:
        raise InputError(f"cannot resume: {', '.join(changed)} changed since the saved checkpoint; train without --resume", out_dir)


@dataclass(frozen=True)
class StepParts:
    """What one optimisation step of the segmenter uses (built once per training)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    loss_fn: Any
    mixed: bool
    memory_format: torch.memory_format
    device: torch.device


@dataclass
class EpochStats:
    """One epoch's step losses, synthetic samples, steps, and seconds waiting for data and computing."""

    losses: list[float] = field(default_factory=list)
    synthetic: int = 0
    steps: int = 0
    wait_s: float = 0.0
    compute_s: float = 0.0


def _train_epoch(loader: DataLoader, parts: StepParts, bar: Any) -> EpochStats:
    """One pass over ``loader``: forward under autocast, loss in float32, scaled backward, gradient
    clipping, optimizer and LR steps; times the wait for each batch apart from the step itself."""
    model, optimizer, scaler, device = parts.model, parts.optimizer, parts.scaler, parts.device
    stats = EpochStats()
    tick = time.perf_counter()
    for batch in loader:
        got = time.perf_counter()
        stats.wait_s += got - tick
        image = batch["image"].to(device, non_blocking=True, memory_format=parts.memory_format)
        label = batch["label"].to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, parts.mixed, half_dtype(device)):
            output = model(image)
        loss = supervised_loss(parts.loss_fn, output.float(), label)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
        scaler.step(optimizer)
        scaler.update()
        parts.scheduler.step()
        stats.losses.append(float(loss.item()))  # .item() waits for the device: compute time is honest
        stats.synthetic += int(batch["synthetic"].sum())
        stats.steps += 1
        bar.update(1)
        bar.set_postfix(loss=f"{stats.losses[-1]:.3f}")
        tick = time.perf_counter()
        stats.compute_s += tick - got
    bar.close()
    return stats


def _resume(out_dir: Path, plan: SegmenterPlan, config: SegmentConfig, model: torch.nn.Module,
            optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any, training_log: TrainingLog) -> tuple[int, float | None]:
    """Load the weights, optimizer, LR schedule, scaler and log of an interrupted training in ``out_dir``;
    returns the epochs done and the best validation Dice so far."""
    state = load_training_state(out_dir)
    if state is None or not (out_dir / WEIGHTS_NAME).is_file():
        raise InputError("nothing to resume: no training_state.pt and weights here; train without --resume", out_dir)
    _check_resumable(out_dir, plan, config)
    load_weights(model, out_dir / WEIGHTS_NAME)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if "scaler" in state and scaler.is_enabled():
        scaler.load_state_dict(state["scaler"])
    start_epoch = int(state["epoch"])
    training_log.resume(start_epoch, state.get(LOG_STATE_KEY))
    return start_epoch, state.get("best_val_dice")


def train_segmenter(
    train: Sequence[PreparedCase],
    validation: Sequence[PreparedCase],
    plan: SegmenterPlan,
    config: SegmentConfig,
    out_dir: str | Path,
    *,
    seed: int,
    context: DistributedContext | None = None,
    synthetic: Sequence[PreparedCase] = (),
    normal: Sequence[Any] = (),
    painter: TumorPainter | None = None,
    fingerprint: Fingerprint | None = None,
    resume: bool = False,
    extra_config: dict[str, Any] | None = None,
    max_epochs: int | None = None,
    memory_format: torch.memory_format = torch.channels_last_3d,
) -> TrainResult:
    """Train the segmenter on prepared cases and write the model folder (rank 0).

    Args:
        train: real training cases at the plan's spacing. validation: cases for validation Dice.
        synthetic: offline synthetic cases; normal + painter: on-the-fly synthesis.
        resume: continue from ``training_state.pt`` in ``out_dir``.
        max_epochs: stop after this many epochs in total (the LR schedule still spans ``config.epochs``);
            for tests and interrupted-run simulations.
        memory_format: the layout of the network's weights and of the batches. Channels-last
            (NDHWC) is the one oneDNN's 3-D convolutions compute in: a training step of the demo's
            DynUNet runs 1.4–1.6× as fast as in NCDHW on a CPU with AVX512-BF16 (and about as fast
            on one with AMX); ``benchmarks/bench_segment.py`` prints the ratio. The weights are
            saved as plain tensors either way: a model trained in one layout loads into the other.
    """
    context = context or DistributedContext()
    out_dir = Path(out_dir)
    device = context.device
    torch.manual_seed(seed + context.rank)
    model = build_network(plan, config).to(device, memory_format=memory_format)
    optimizer = make_optimizer(model, config)
    total_steps = config.epochs * config.steps_per_epoch
    scheduler = torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=total_steps, power=config.poly_power)
    scaler = grad_scaler(device, config.mixed_precision, half_dtype(device))
    use_scaler = scaler.is_enabled()
    loss_fn = make_loss(config)
    mixed = mixed_precision_checked(device, config.mixed_precision, model, _probe_forward(model, plan, config, device),
                                    "segmenter")

    start_epoch, best = 0, None
    training_log = TrainingLog(out_dir, LOG_FIELDS, step_key="epoch", groups=CURVES)
    if resume:
        start_epoch, best = _resume(out_dir, plan, config, model, optimizer, scheduler, scaler, training_log)
        if context.is_main:
            log.info("segmenter: resuming after epoch %d of %d", start_epoch, config.epochs)

    model = wrap_ddp(model, context)
    model_config = {
        "kind": MODEL_KIND, "backbone": config.backbone, "segment": config.model_dump(mode="json"),
        "in_channels": 4, "out_channels": 3, "channel_phases": ["NC", "AP", "PVP", "DP"], **(extra_config or {}),
    }
    if context.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            write_plan(plan, fingerprint, out_dir / PLAN_FILE)
        write_json_atomic(out_dir / CONFIG_NAME, {**model_config, "epochs_done": start_epoch})

    pool = None
    if normal and painter is not None and config.synthetic_pool > 0:
        # painting per sample starves the trainer: keep a pool, refreshed in the background
        pool = SyntheticPool(normal, painter, plan, config.phases, config.synthetic_pool, config.synthetic_pool_refresh,
                             seed=rank_seed(seed, context.rank))
        normal, painter = (), None
    dataset = HybridDataset(
        train, plan, config, samples_per_epoch=config.steps_per_epoch * config.batch_size, seed=seed,
        rank=context.rank, synthetic=synthetic, normal=normal, painter=painter,
        pooled=pool is not None,
    )
    workers = loader_worker_count(config.loader_workers, device, context.world_size)
    last_epoch = min(config.epochs, max_epochs) if max_epochs is not None else config.epochs
    threads_before = torch.get_num_threads()
    if workers and device.type == "cpu":  # the loader processes take their cores from the budget
        torch.set_num_threads(max(1, thread_budget() - workers))
    try:
        for epoch in range(start_epoch, last_epoch):
            if pool is not None:
                dataset.synthetic = pool.cases_for_epoch(epoch)
            dataset.set_epoch(epoch)
            loader = DataLoader(
                dataset, batch_size=config.batch_size, num_workers=workers, shuffle=False, drop_last=True,
                pin_memory=device.type == "cuda", worker_init_fn=_worker_init if workers else None,
            )
            model.train()
            epoch_start = time.perf_counter()
            bar = progress(total=config.steps_per_epoch, desc=f"train {epoch + 1}/{config.epochs}", unit="step", leave=False)
            stats = _train_epoch(loader, StepParts(model, optimizer, scheduler, scaler, loss_fn, mixed, memory_format, device), bar)
            from diff4mmlits.distributed import all_reduce_mean

            train_loss = all_reduce_mean(float(np.mean(stats.losses)), context)
            wait_s, compute_s = stats.wait_s, stats.compute_s
            row: dict[str, Any] = {
                "epoch": epoch + 1, "train_loss": train_loss, "lr": optimizer.param_groups[0]["lr"],
                "synthetic_share": stats.synthetic / max(stats.steps * config.batch_size, 1), "steps": stats.steps,
                "loader_wait_s": wait_s, "compute_s": compute_s,
                "val_dice_liver": float("nan"), "val_dice_tumor": float("nan"), "val_dice_mean": float("nan"),
            }
            is_last = epoch + 1 == last_epoch
            improved = False
            if validation and ((epoch + 1) % config.validate_every_epochs == 0 or is_last):
                scores = validate(model, validation, plan, config, context)
                row.update(val_dice_liver=scores["liver"], val_dice_tumor=scores["tumor"], val_dice_mean=scores["mean"])
                improved = best is None or scores["mean"] > best
                best = max(best, scores["mean"]) if best is not None else scores["mean"]
            row["epoch_s"] = time.perf_counter() - epoch_start
            training_log.add(row)
            if context.is_main:
                net = unwrap(model)
                state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "epoch": epoch + 1,
                         "best_val_dice": best, "seed": seed}
                if use_scaler:
                    state["scaler"] = scaler.state_dict()
                save_checkpoint(out_dir, net, {**model_config, "epochs_done": epoch + 1, "best_val_dice": best}, state,
                                training_log, others={BEST_NAME: net} if improved or not validation else None, final=is_last)
                log.info(
                    "epoch %d/%d: loss %.4f, val Dice liver %.3f tumor %.3f, %.1f s (%.0f%% waiting for data)",
                    epoch + 1, config.epochs, train_loss, row["val_dice_liver"], row["val_dice_tumor"], row["epoch_s"],
                    100 * wait_s / max(wait_s + compute_s, 1e-9),
                )
            barrier(context)
    finally:
        torch.set_num_threads(threads_before)
        if pool is not None:
            pool.close()
    rows = training_log.rows
    return TrainResult(out_dir, len(rows) and int(rows[-1]["epoch"]), best, rows, unwrap(model))


MAX_GPU_LOADER_WORKERS = 12
"""nnU-Net's default number of augmentation processes per GPU."""


def loader_worker_count(configured: int | None, device: torch.device, world_size: int = 1) -> int:
    """DataLoader workers: ``segment.loader_workers`` when set; else on a GPU this process's share of
    the cores (``world_size`` processes share them) less one for the training loop, at most
    :data:`MAX_GPU_LOADER_WORKERS`; on a CPU 2 (the training computes on the cores itself)."""
    if configured is not None:
        return configured
    if device.type == "cpu":
        return 2
    return max(1, min(MAX_GPU_LOADER_WORKERS, usable_cores() // max(world_size, 1) - 1))


def training_liver_ranges(cases: Sequence[Case]) -> dict[str, Any]:
    """The training cases' liver volumes (mL) and per-phase median liver HU: min and max over cases."""
    volumes, medians = [], {}
    for case in cases:
        if case.label is None or not (case.label.array >= 1).any():
            continue
        liver = case.label.array >= 1
        volumes.append(float(liver.sum()) * float(np.prod(case.label.spacing_mm)) / 1000.0)
        for name, volume in case.phases.items():
            if volume.shape == liver.shape:
                medians.setdefault(name, []).append(float(np.median(volume.array[case.label.array == 1])))
    if not volumes:
        return {}
    return {"volume_ml": [round(min(volumes), 1), round(max(volumes), 1)],
            "median_hu": {name: [round(min(v), 1), round(max(v), 1)] for name, v in medians.items()}}


def train_model(
    train: Sequence[Case],
    validation: Sequence[Case],
    config: SegmentConfig,
    out_dir: str | Path,
    *,
    seed: int,
    context: DistributedContext | None = None,
    synthetic: Sequence[Case] = (),
    normal: Sequence[Case] = (),
    painter: TumorPainter | None = None,
    resume: bool = False,
    echo: Callable[[str], None] = print,
    extra_config: dict[str, Any] | None = None,
    memory_format: torch.memory_format = torch.channels_last_3d,
) -> TrainResult:
    """The segmenter from registered, labelled cases in memory: plan, prepare, train, write ``out_dir``.

    With ``config.cascade`` two models in one folder (:mod:`segment.cascade`): stage one finds the
    liver on a coarse grid (``out_dir/liver/``), stage two segments liver and tumor in the liver's
    box at a fine spacing (``out_dir``); its result is returned. ``synthetic``: offline synthetic
    cases; ``normal`` + ``painter``: on-the-fly synthesis. The training cases' orientation code (the
    most common) is kept in ``config.json`` as ``orientation``. ``memory_format``: both stages'
    layout (:func:`train_segmenter`).
    """
    context = context or DistributedContext()
    out_dir = Path(out_dir)
    extra = dict(extra_config or {})
    # the orientation the network learned; predict turns other cases into it and back
    codes = [orientation_code(c.annotated) for c in train]
    extra["orientation"] = max(set(codes), key=codes.count)
    extra["training_livers"] = training_liver_ranges(train)  # predict warns about cases far outside

    def fit(what: str, seg: SegmentConfig, plan: SegmenterPlan, fp: Fingerprint, folder: Path, cases: Sequence[Case],
            val: Sequence[Case], painted: Sequence[Case], normals: Sequence[Case], paint_at_plan_spacing: bool) -> TrainResult:
        if context.is_main:
            echo(f"{what}: " + plan.describe())
        prepared_train = [prepare_case(c, plan, seg.phases) for c in progress(cases, desc="prepare", unit="case")]
        prepared_val = [prepare_case(c, plan, seg.phases) for c in val]
        prepared_synthetic = [prepare_case(c, plan, seg.phases) for c in painted]
        # the painter works on crops of a fixed number of voxels: on a cascade's fine, anisotropic grid
        # it paints at the case's own spacing and the painted case is resampled (as offline cases are)
        ready_normal = [resample_case(c, plan.target_spacing_mm) for c in normals] if paint_at_plan_spacing else list(normals)
        if context.is_main:
            echo(f"training data: {len(prepared_train)} real, {len(prepared_synthetic)} offline synthetic, "
                 f"{len(ready_normal)} normal CT for on-the-fly synthesis (ratio "
                 f"{seg.synthetic_ratio if prepared_synthetic or ready_normal else 0:g}), "
                 f"{len(prepared_val)} validation; phases {','.join(seg.phases)}")
        start = time.time()
        result = train_segmenter(prepared_train, prepared_val, plan, seg, folder, seed=seed, context=context,
                                 synthetic=prepared_synthetic, normal=ready_normal, painter=painter if ready_normal else None,
                                 fingerprint=fp, resume=resume, extra_config=extra, memory_format=memory_format)
        if context.is_main:
            echo(f"trained {result.epochs_done} epoch(s) in {time.time() - start:.0f} s; best validation Dice "
                 f"{'–' if result.best_val_dice is None else f'{result.best_val_dice:.3f}'}; "
                 f"{result.steps_per_second:.2f} steps/s, {100 * result.loader_wait_fraction:.0f}% of the loop waiting for data")
        return result

    if not config.cascade:
        if config.normalization == "liver":
            raise InputError("segment.normalization=liver needs segment.cascade=true: only the cascade's stage "
                             "one finds the liver a new case is normalised on")
        fp = fingerprint_of_cases(train, config.window_hu)
        return fit("segmenter", config, plan_segmenter(fp, config), fp, out_dir, train, validation, synthetic, normal, True)
    whole = fingerprint_of_cases(train, config.window_hu)
    liver_config = config.model_copy(update={"cascade": False, "synthetic": "none", "synthetic_ratio": 0.0,
                                             "epochs": config.cascade_liver_epochs or config.epochs,
                                             "normalization": "dataset" if config.normalization in ("auto", "liver")
                                             else config.normalization})
    liver_plan = plan_segmenter(whole, liver_config,
                                liver_spacing(whole.spacings_mm, whole.shapes, config.cascade_liver_max_vox))
    fit("stage 1 of 2, the liver on a coarse grid", liver_config, liver_plan, whole, out_dir / LIVER_MODEL,
        train, validation, [], [], True)
    margin = config.cascade_margin_mm
    train, validation, synthetic, normal = ([crop_to_liver(c, margin) for c in cases]
                                            for cases in (train, validation, synthetic, normal))
    fp = fingerprint_of_cases(train, config.window_hu)
    spacing = tumor_spacing(np.median(np.asarray(fp.spacings_mm), axis=0), small_tumor_diameter_mm(train),
                            config.cascade_min_tumor_vox)
    extra["cascade"] = {"liver_model": LIVER_MODEL, "margin_mm": margin}
    if config.normalization == "auto":  # stage two reads enhancement relative to the case's liver
        config = config.model_copy(update={"normalization": "liver"})
    return fit("stage 2 of 2, liver and tumor in the liver's box", config, plan_segmenter(fp, config, spacing), fp,
               out_dir, train, validation, synthetic, normal, False)
