"""What the synthesizer's two training loops share: the log (CSV + curve PNG), mixed precision,
per-step seeds, and saving/resuming a model folder.

Resume state is ``training_state.pt`` (optimiser state dicts and the step; loaded with
``weights_only=True``) beside ``weights.safetensors``; batches are drawn from a generator seeded by
``(seed, rank, step)``, so a resumed run draws the same batches as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import csv
import io
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from diff4mmlits.files import write_text_atomic

PLOT_EVERY_S = 60.0
LOG_NAME = "log.csv"
CURVES_NAME = "curves.png"


def step_rng(seed: int, rank: int, step: int) -> np.random.Generator:
    """The batch generator of one training step (the same after a resume)."""
    return np.random.default_rng([seed, rank, step])


@contextlib.contextmanager
def autocast(device: torch.device) -> Iterator[None]:
    """bfloat16 autocast on CUDA; full precision elsewhere."""
    if device.type == "cuda":
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            yield
    else:
        yield


class TrainingLog:
    """Rows of ``step`` and losses, written to ``log.csv`` and plotted to ``curves.png`` (atomically)."""

    def __init__(self, folder: Path, columns: list[str], resume: bool = False) -> None:
        self.folder = Path(folder)
        self.columns = ["step", *columns]
        self.rows: list[dict[str, float]] = []
        self._plotted = time.monotonic()
        path = self.folder / LOG_NAME
        if resume and path.is_file():
            with open(path, newline="") as handle:
                for row in csv.DictReader(handle):
                    self.rows.append({k: float(v) for k, v in row.items() if k in self.columns and v not in ("", None)})

    def add(self, step: int, **values: float) -> None:
        self.rows = [row for row in self.rows if row.get("step", -1) < step]  # a resume overwrites later rows
        self.rows.append({"step": float(step), **{k: float(v) for k, v in values.items()}})

    def write(self, title: str, final: bool = False) -> None:
        """Write ``log.csv``; redraw ``curves.png`` at the end, or when the last drawing is a minute old."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, extrasaction="ignore")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: (int(v) if k == "step" else f"{v:.6g}") for k, v in row.items()})
        write_text_atomic(self.folder / LOG_NAME, buffer.getvalue())
        if final or time.monotonic() - self._plotted > PLOT_EVERY_S:
            self.plot(title)
            self._plotted = time.monotonic()

    def plot(self, title: str) -> None:
        import matplotlib.pyplot as plt

        from diff4mmlits.figures import save_figure

        if not self.rows:
            return
        names = [c for c in self.columns[1:] if any(c in row for row in self.rows)]
        fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.8), squeeze=False)
        for ax, name in zip(axes[0], names):
            points = [(row["step"], row[name]) for row in self.rows if name in row]
            steps, values = zip(*points)
            ax.plot(steps, values, lw=1)
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            if all(v > 0 for v in values) and max(values) / max(min(values), 1e-12) > 30:
                ax.set_yscale("log")
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        save_figure(fig, self.folder / CURVES_NAME)


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
        means = {key: self.sums[key] / self.counts[key] for key in self.sums}
        self.sums, self.counts = {}, {}
        return means
