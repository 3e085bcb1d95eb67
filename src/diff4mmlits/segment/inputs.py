"""Model input: the four phase channels, the missing-phase rule, window and z-score (paper §III-C, §IV-B).

Channel order is always ``NC, AP, PVP, DP`` (:data:`diff4mmlits.PHASES`) and the network always has
four input channels, whatever phases a case has or a model was trained on.

**Missing-phase rule** (paper §III-C: "certain modalities will be duplicated to match the input
size"). A channel whose phase is absent — missing from the case, or left out by ``--phases`` — is
a copy of the *nearest present phase in acquisition time* (NC → AP → PVP → DP). When two present
phases are equally near, the later one is used (it is closer in contrast to the annotated PVP,
which is always present). Examples, present → channels NC, AP, PVP, DP:

    PVP            → PVP, PVP, PVP, PVP   (the paper's example: one phase replicated four times)
    AP, PVP        → AP,  AP,  PVP, PVP
    NC, PVP        → NC,  PVP, PVP, PVP   (AP: NC and PVP equally near, the later wins)
    NC, AP, PVP    → NC,  AP,  PVP, PVP
    AP, PVP, DP    → AP,  AP,  PVP, DP

So ``--phases PVP`` (the unimodal baseline) trains the same 4-channel network on four copies of
PVP, exactly as the paper stacks the single-phase LiTS images four times.

**Intensities**: HU are clipped to the window ([-21, 189] HU in the paper), then z-scored. With
``normalization="dataset"`` (nnU-Net's CT scheme) the mean and sd are those of the windowed HU
inside the training livers, per phase, stored in the plan; ``"case"`` uses each case's own
channel mean/sd; ``"none"`` only clips. ``"liver"`` centres each phase on *this case's* liver
(the median windowed HU inside it) and scales by the training livers' sd: enhancement is then
read relative to the liver, as radiologists read it (hypo-/hyper-enhancing), so a scanner whose
contrast timing makes the whole liver 20 HU darker in one phase does not make it look like tumor.
It needs the liver: the label's in training, stage one's at prediction (the cascade's stage two).
A duplicated channel is normalised with the statistics of the phase it copies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from diff4mmlits import PHASES
from diff4mmlits.errors import InputError

PHASE_TIME_ORDER: dict[str, int] = {name: position for position, name in enumerate(PHASES)}
"""Acquisition order of the phases: NC (0), AP (1), PVP (2), DP (3)."""


def phase_sources(present: Iterable[str]) -> dict[str, str]:
    """For each channel NC, AP, PVP, DP: the present phase whose image fills it.

    A present phase fills its own channel; an absent one copies the present phase nearest in
    acquisition time, the later one on a tie. Raises :class:`InputError` when nothing is present.
    """
    given = set(present)  # once: a generator is read a single time
    available = [name for name in PHASES if name in given]
    if not available:
        raise InputError(f"no usable phase: a case needs at least one of {', '.join(PHASES)}")
    sources: dict[str, str] = {}
    for channel in PHASES:
        t = PHASE_TIME_ORDER[channel]
        # nearest in time; on a tie the later phase (larger time index) wins
        sources[channel] = min(available, key=lambda name: (abs(PHASE_TIME_ORDER[name] - t), -PHASE_TIME_ORDER[name]))
    return sources


@dataclass(frozen=True)
class IntensityStats:
    """Mean and sd (HU, after the window) of one phase inside the liver, for the z-score."""

    mean_hu: float
    sd_hu: float


def window_hu(array: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Clip HU to ``window`` (low, high); float32 out."""
    low, high = window
    return np.clip(array.astype(np.float32, copy=False), low, high)


def normalize_channel(
    array_hu: np.ndarray,
    window: tuple[float, float],
    mode: str,
    stats: IntensityStats | None = None,
    liver: np.ndarray | None = None,
) -> np.ndarray:
    """Window then z-score one ``(z, y, x)`` channel (HU in, unitless out, float32).

    ``liver`` (boolean, same shape) is needed by ``mode="liver"``: the channel is centred on the
    median windowed HU inside it (the training livers' mean when it is empty) and scaled by the
    training livers' sd (``stats``).
    """
    clipped = window_hu(array_hu, window)
    if mode == "none":
        return clipped
    if mode in ("dataset", "liver"):
        if stats is None:
            raise ValueError(f"{mode} normalisation needs the phase's IntensityStats (from the plan)")
        mean, sd = stats.mean_hu, stats.sd_hu
        if mode == "liver":
            if liver is None:
                raise ValueError("liver normalisation needs the case's liver mask")
            inside = clipped[np.asarray(liver, dtype=bool)]
            if inside.size:
                mean = float(np.median(inside))
    elif mode == "case":
        mean, sd = float(clipped.mean()), float(clipped.std())
    else:
        raise ValueError(f"unknown normalization {mode!r}")
    return (clipped - np.float32(mean)) / np.float32(max(sd, 1e-3))


def stack_channels(
    phases_hu: Mapping[str, np.ndarray],
    model_phases: Iterable[str],
    window: tuple[float, float],
    mode: str,
    stats: Mapping[str, IntensityStats] | None = None,
    liver: np.ndarray | None = None,
) -> np.ndarray:
    """Four normalised channels ``(4, z, y, x)`` float32 in the order NC, AP, PVP, DP.

    ``phases_hu`` maps the phases present to ``(z, y, x)`` HU arrays on one grid; only those in
    ``model_phases`` are used, and absent channels are filled by :func:`phase_sources`. ``liver``:
    the boolean liver mask on that grid, for ``mode="liver"``.
    """
    allowed = set(model_phases)
    present = [name for name in PHASES if name in phases_hu and name in allowed]
    if not present:
        raise InputError(
            f"none of the model's phases ({', '.join(sorted(allowed))}) is present "
            f"(the case has {', '.join(sorted(phases_hu))})"
        )
    shapes = {tuple(phases_hu[name].shape) for name in present}
    if len(shapes) != 1:
        raise InputError(f"phases lie on different grids {sorted(shapes)}; register the case first")
    normalised = {
        name: normalize_channel(phases_hu[name], window, mode, (stats or {}).get(name), liver) for name in present
    }
    sources = phase_sources(present)
    return np.stack([normalised[sources[channel]] for channel in PHASES]).astype(np.float32, copy=False)
