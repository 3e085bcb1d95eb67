"""What every training loop shares: the log (``log.csv`` + ``curves.png``), running means, per-step
batch generators and the mixed-precision policy.

A leaf module: it imports no stage package, so every trainer (inpaint, segment, translate, the
synthesizer's two) can use it.

The log is a list of rows, one per logged step, keyed by the number of steps (or epochs) *done*
when the row was logged. It is written atomically to ``log.csv`` and plotted to ``curves.png``.
The rows travel in ``training_state.pt`` (``TrainingLog.rows``, under the key ``"log"``); on
resume at ``done`` steps the rows with step ≤ ``done`` (those logged before the checkpoint) are
kept and later ones dropped, whichever file they come from (``log.csv`` for folders written before
the rows were saved in the state).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diff4mmlits.checkpoint import non_finite_tensors, save_checkpoint_files
from diff4mmlits.errors import TrainingDiverged
from diff4mmlits.files import write_text_atomic

log = logging.getLogger(__name__)

LOG_NAME = "log.csv"
CURVES_NAME = "curves.png"
LOG_STATE_KEY = "log"
"""The key of the log rows in ``training_state.pt``."""
PLOT_EVERY_S = 60.0
"""``curves.png`` is redrawn at the end, or on a write when the last drawing is older than this."""
UNPLOTTED = ("lr", "seconds")
"""Columns a catch-all panel (``CurveGroup.columns is None``) leaves out: they are not losses."""


# --- per-step randomness and mixed precision ----------------------------------------------------
# Named seed streams: each random choice of a training draws from its own generator, seeded from the
# run's seed and a fixed number, so that adding a draw in one place does not move the others (the
# numbers themselves are arbitrary; changing one changes every figure that depends on it).
CROP_STREAM = 31
"""``default_rng([seed, CROP_STREAM])``: which real-tumor crops the diffusion model and the CUT painter
train on."""
EVALUATION_STREAM = 12345
"""``default_rng([seed, EVALUATION_STREAM, i])``: the diffusion model's fixed evaluation batches."""


def rank_seed(seed: int, rank: int) -> int:
    """The seed of a per-process sampler under DDP (each rank draws other batches)."""
    return seed * 1000 + rank


def code_restart_seed(seed: int, step: int) -> int:
    """The seed of the autoencoder's dead-code restart at ``step``."""
    return seed * 7919 + step


def step_rng(seed: int, rank: int, step: int) -> np.random.Generator:
    """The batch generator of one training step (the same after a resume)."""
    return np.random.default_rng([seed, rank, step])


def cpu_computes_bfloat16() -> bool:
    """This CPU has bfloat16 arithmetic in hardware (AVX512-BF16 or AMX), so oneDNN's bfloat16
    convolutions beat float32 ones: a DynUNet training step of the demo took 0.21 s instead of
    0.35 s on 2 cores (1.6×). Elsewhere bfloat16 is emulated and slower than float32."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    try:
        return any(bool(getattr(torch.cpu, name)()) for name in probes if hasattr(torch.cpu, name))
    except RuntimeError:  # a probe that cannot read the CPU's flags
        return False


def half_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 where the device supports it (CUDA with bf16; a CPU always, see :func:`autocast`), else float16."""
    # bf16 in hardware only: V100 and T4 "support" it by emulation, slower than float16 with a scaler
    if device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)):
        return torch.bfloat16
    return torch.float16


def autocast(device: torch.device, enabled: bool = True, dtype: torch.dtype = torch.bfloat16) -> contextlib.AbstractContextManager:
    """Mixed precision when ``enabled``: ``dtype`` autocast on CUDA; bfloat16 autocast on a CPU that
    computes it in hardware (:func:`cpu_computes_bfloat16`; float16 is never native on a CPU, so
    ``dtype`` is not used there); full float32 precision on any other device."""
    if not enabled:
        return contextlib.nullcontext()
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=dtype)
    if device.type == "cpu" and cpu_computes_bfloat16():
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


BFLOAT16_GRADIENT_TOLERANCE = 0.05
"""Largest relative difference between a convolution's weight gradient under bfloat16 autocast and
in float32 that still counts as agreement (rounding gives ~0.004, the broken kernel 0.8 to inf)."""
CONVOLUTIONS = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d,
                torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)


def bfloat16_disagreement(network: torch.nn.Module, forward: Callable[[], Any],
                          tolerance: float = BFLOAT16_GRADIENT_TOLERANCE) -> str | None:
    """The first convolution of ``network`` whose weight gradient under CPU bfloat16 autocast differs
    from float32's by more than ``tolerance`` (relative), at each input shape it sees in
    ``forward()`` (a float32 forward pass of the training shapes), or ``None`` when all agree.

    Why: torch 2.13's oneDNN computes a wrong weight gradient for a 3-D convolution whose kernel is
    3 deep when its input is 2 slices deep on some CPUs (relative error 0.8 to inf, measured on one;
    right on another with AMX, so it is checked on the machine that trains; the input gradient
    and 2-D convolutions are right), which silently wrecks training (the diffusion U-Net reached NaN
    in one step). Each convolution is checked alone, on a copy, with a well-conditioned loss (a whole
    random network's gradients differ by ~0.35 from rounding alone); ``network`` is not changed."""
    seen: dict[str, list[tuple[tuple[int, ...], torch.memory_format]]] = {}

    def record(name: str):
        def hook(module: torch.nn.Module, args: tuple) -> None:  # returns None: the input is left as it is
            inputs = seen.setdefault(name, [])
            entry = (tuple(args[0].shape), _convolution_layout(module.weight, args[0]))
            if entry not in inputs:
                inputs.append(entry)
        return hook

    hooks = [module.register_forward_pre_hook(record(name))
             for name, module in network.named_modules() if isinstance(module, CONVOLUTIONS)]
    was_training = network.training
    try:
        network.eval()
        with torch.no_grad():
            forward()
    finally:
        for hook in hooks:
            hook.remove()
        network.train(was_training)
    checked: dict[tuple, bool] = {}
    for name, inputs in seen.items():
        module = network.get_submodule(name)
        for shape, layout in inputs:  # every input it saw: whether the kernel errs depends on the batch and channels too
            key = (type(module), tuple(module.weight.shape), module.stride, module.padding, module.dilation,
                   module.groups, shape, layout)
            if key not in checked:
                checked[key] = _convolution_agrees(module, shape, tolerance, layout)
            if not checked[key]:
                return name
    return None


def _convolution_layout(weight: torch.Tensor, x: torch.Tensor) -> torch.memory_format:
    """The layout a convolution computes in: channels-last when its weight or its input is stored
    so (PyTorch then picks oneDNN's NHWC / NDHWC kernels, which are other code than NCHW's)."""
    channels_last = {4: torch.channels_last, 5: torch.channels_last_3d}.get(weight.dim())
    if channels_last is None:
        return torch.contiguous_format
    if any(not t.is_contiguous() and t.is_contiguous(memory_format=channels_last) for t in (weight, x)):
        return channels_last
    return torch.contiguous_format


def _convolution_agrees(module: torch.nn.Module, input_shape: tuple[int, ...], tolerance: float,
                        layout: torch.memory_format = torch.contiguous_format) -> bool:
    """A float32 copy of one convolution: its weight gradients for a random input of ``(B, C, ...)``
    shape in ``layout``, under bfloat16 autocast and in float32, agree within ``tolerance``."""
    layer = copy.deepcopy(module).float().cpu()  # the weights keep their layout
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(input_shape, generator=generator).contiguous(memory_format=layout)
    gradients = []
    for bfloat16 in (False, True):
        layer.zero_grad(set_to_none=True)
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=bfloat16):
            y = layer(x)
        y.float().square().mean().backward()
        gradients.append(layer.weight.grad)
    exact, half = gradients
    error = float((half - exact).norm())
    return math.isfinite(error) and error <= tolerance * float(exact.norm())


def mixed_precision_checked(device: torch.device, enabled: bool, network: torch.nn.Module,
                            forward: Callable[[], Any], label: str) -> bool:
    """Whether to train ``network`` under :func:`autocast`: ``enabled`` on CUDA; on a CPU, also that
    the CPU computes bfloat16 (:func:`cpu_computes_bfloat16`) and that a bfloat16 backward pass
    gives float32's gradients (:func:`bfloat16_disagreement`; where not, one log line and float32)."""
    if not enabled or device.type != "cpu":
        return bool(enabled and device.type == "cuda")
    if not cpu_computes_bfloat16():
        return False
    wrong = bfloat16_disagreement(network, forward)
    if wrong is not None:
        log.info("%s: trains in float32 on this CPU: under bfloat16 the gradient of %s differs from float32's "
                 "(a torch kernel's error; see training.bfloat16_disagreement)", label, wrong)
        return False
    return True


def grad_scaler(device: torch.device, enabled: bool = True, dtype: torch.dtype = torch.bfloat16) -> torch.amp.GradScaler:
    """The gradient scaler that goes with :func:`autocast` of the same arguments: it scales only under
    float16 autocast on CUDA (bfloat16 and float32 gradients do not underflow); otherwise it is a no-op."""
    return torch.amp.GradScaler("cuda", enabled=bool(enabled and device.type == "cuda" and dtype == torch.float16))


# --- the log ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CurveGroup:
    """One panel of ``curves.png``: ``columns`` against the step.

    ``columns=None`` takes every logged column that no other panel names, except the step and
    :data:`UNPLOTTED`. ``log_scale=None`` picks a log axis when the values are positive and span
    more than a factor 30 (what the default panels, one per column, do).
    """

    title: str
    columns: tuple[str, ...] | None = None
    ylabel: str = ""
    log_scale: bool | None = False
    ylim: tuple[float, float] | None = None


def _cell(value: Any) -> Any:
    """How one value is written to ``log.csv``: integers as they are, other numbers with 6 significant digits."""
    if isinstance(value, (bool, int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    return value


def read_log(path: str | Path, step_key: str = "step") -> list[dict[str, float]]:
    """The rows of a ``log.csv``: ``step_key`` as an int, every other non-empty cell as a float."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [{k: (int(float(v)) if k == step_key else float(v)) for k, v in row.items() if k is not None and v not in ("", None)}
                for row in csv.DictReader(handle)]


class TrainingLog:
    """Rows of one training run, written to ``log.csv`` and plotted to ``curves.png`` (atomically).

    Args:
        folder: the model folder.
        columns: the columns of ``log.csv`` in order, the step first; ``None``: every key the rows
            hold, in the order they first appear.
        step_key: the column that counts progress (``step``, or ``epoch`` for the segmenter).
        groups: the panels of ``curves.png``; default one panel per column.
        title: the figure's title.
    """

    def __init__(self, folder: str | Path, columns: Sequence[str] | None = None, *, step_key: str = "step",
                 groups: Sequence[CurveGroup] | None = None, title: str = "") -> None:
        self.folder = Path(folder)
        self.step_key = step_key
        self.columns = list(columns) if columns is not None else None
        self.groups = list(groups) if groups is not None else None
        self.title = title
        self.rows: list[dict[str, Any]] = []
        self._plotted = time.monotonic()

    def resume(self, done: int, rows: Sequence[dict[str, Any]] | None = None) -> None:
        """Restore the rows logged up to ``done`` steps: from ``rows`` (the training state's) when
        given, else from ``log.csv``; rows with a later step are dropped."""
        source = [dict(row) for row in rows] if rows is not None else read_log(self.folder / LOG_NAME, self.step_key)
        self.rows = [row for row in source if row.get(self.step_key, math.inf) <= done]

    def add(self, row: dict[str, Any]) -> dict[str, Any]:
        """Append one row (it must hold the step key); returns it."""
        if self.step_key not in row:
            raise ValueError(f"a log row needs its {self.step_key!r}")
        self.rows.append(row)
        return row

    @property
    def last(self) -> dict[str, Any]:
        """The last row, or ``{}``."""
        return self.rows[-1] if self.rows else {}

    def fieldnames(self) -> list[str]:
        """The columns of ``log.csv``."""
        if self.columns is not None:
            return self.columns
        return list(dict.fromkeys(key for row in self.rows for key in row))

    def write(self, final: bool = False) -> None:
        """Write ``log.csv``; redraw ``curves.png`` when ``final`` or when the last drawing is :data:`PLOT_EVERY_S` old."""
        if not self.rows:
            return
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.fieldnames(), extrasaction="ignore")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})
        write_text_atomic(self.folder / LOG_NAME, buffer.getvalue())
        if final or time.monotonic() - self._plotted > PLOT_EVERY_S:
            self.plot()

    def _panels(self) -> list[tuple[CurveGroup, list[str]]]:
        logged = [c for c in self.fieldnames() if c != self.step_key and any(_finite(row.get(c)) for row in self.rows)]
        groups = self.groups if self.groups is not None else [CurveGroup(name, (name,), log_scale=None)
                                                              for name in logged if name not in UNPLOTTED]
        named = {c for g in groups if g.columns is not None for c in g.columns}
        rest = [c for c in logged if c not in named and c not in UNPLOTTED]
        panels = [(g, [c for c in (g.columns if g.columns is not None else rest) if c in logged]) for g in groups]
        return [(g, names) for g, names in panels if names]

    def plot(self) -> Path | None:
        """Draw ``curves.png`` (every panel of :attr:`groups`); ``None`` when there is nothing to draw."""
        if not self.rows:
            return None
        from diff4mmlits.figures import plt, save_figure

        panels = self._panels()
        if not panels:
            return None
        fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
        for ax, (group, names) in zip(axes[0], panels):
            values_all: list[float] = []
            for name in names:
                points = [(row[self.step_key], float(row[name])) for row in self.rows if _finite(row.get(name))]
                steps, values = zip(*points)
                values_all += values
                ax.plot(steps, values, lw=1, label=name, marker="." if len(steps) < 20 else None)
            log_scale = group.log_scale
            if log_scale is None:
                log_scale = bool(values_all) and min(values_all) > 0 and max(values_all) / max(min(values_all), 1e-12) > 30
            if log_scale and values_all and min(values_all) > 0:
                ax.set_yscale("log")
            if group.ylim is not None:
                ax.set_ylim(*group.ylim)
            ax.set_title(group.title, fontsize=10)
            ax.set_xlabel(self.step_key, fontsize=8)
            if group.ylabel:
                ax.set_ylabel(group.ylabel, fontsize=8)
            if len(names) > 1:
                ax.legend(fontsize=7)
        if self.title:
            fig.suptitle(self.title, fontsize=10)
        fig.tight_layout()
        self._plotted = time.monotonic()
        return save_figure(fig, self.folder / CURVES_NAME)


def _finite(value: Any) -> bool:
    """Whether a log cell holds a finite number (empty cells and NaN are not drawn)."""
    try:
        return value is not None and value != "" and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


class RunningMean:
    """Mean of the values added since the last ``pop`` (for the log and the progress bar)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, **values: float) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
            self.counts[key] = self.counts.get(key, 0) + 1

    def pop(self) -> dict[str, float]:
        """The means since the last ``pop`` (only the keys that were added), and start again."""
        means = {key: self.sums[key] / self.counts[key] for key in self.sums}
        self.sums, self.counts = {}, {}
        return means


def save_checkpoint(folder: str | Path, model: torch.nn.Module, model_config: dict[str, Any], state: dict[str, Any],
                    training_log: TrainingLog, others: Mapping[str, torch.nn.Module] | None = None,
                    final: bool = False) -> Path:
    """One checkpoint of a training, the same for every trainer: the model folder (``config.json`` and
    the weights that inference loads), the weight files of the other networks (``others``: file name →
    network, e.g. the discriminator) and ``training_state.pt`` (``state`` plus the log rows, so a resume
    restores them), written as one unit (:func:`~diff4mmlits.checkpoint.write_file_group`), then
    ``log.csv`` (and ``curves.png`` when ``final`` or when due)."""
    require_finite_weights(model, Path(folder))
    folder = save_checkpoint_files(folder, model, model_config, {**state, LOG_STATE_KEY: training_log.rows}, others)
    training_log.write(final=final)
    return folder


def require_finite_weights(model: torch.nn.Module, folder: Path) -> None:
    """Raise :class:`TrainingDiverged` before a checkpoint of non-finite weights replaces a good one.

    (Mixed precision's scaler skips a step whose gradients overflow, so only a training that really
    diverged gets here: a NaN loss trained on in float32, or a learning rate far too high.) The
    training stops there with one line, its stage is not stamped, and the last good checkpoint in
    ``folder`` stays for ``--resume`` with a lower rate."""
    broken = non_finite_tensors(model.state_dict())
    if broken:
        raise TrainingDiverged(f"the training diverged: {len(broken)} weight tensor(s) hold NaN or Inf (first: "
                               f"{broken[0]}); lower the stage's learning_rate (--set) and train again; the last good "
                               "checkpoint here is kept", folder)
