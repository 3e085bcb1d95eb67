"""The segmenter's plan, derived from the data as nnU-Net does (paper §IV-B: "nnUNet as the default backbone").

Two pure functions:

* :func:`fingerprint` — what the training cases look like: voxel spacings, shapes, and the HU
  distribution inside the liver per phase (percentiles, and mean/sd after the model's window,
  used for the z-score).
* :func:`plan_segmenter` — what follows from it: the target spacing (the median spacing; for
  strongly anisotropic data the 10th percentile along the coarse axis, as nnU-Net), the median
  shape at that spacing, the patch size, and the U-Net's depth, kernels and strides.

Patch and topology (nnU-Net's experiment planner, simplified):

1. Start from a patch that is isotropic *in mm* and as large as the median shape allows.
2. Topology for a patch: an axis is pooled (stride 2) while its feature map stays ≥ 2·4 voxels and
   its current spacing is less than twice the smallest current spacing; a convolution kernel is 3
   along an axis whose spacing is within twice the smallest, else 1 (no in-plane-only blur mixing
   far-apart slices). At most ``max_pooling_steps`` poolings.
3. The patch is made divisible by the product of strides along each axis.
4. While the estimated activation memory of one training batch exceeds the memory budget, the
   axis whose patch is largest relative to the median shape is shrunk by one pooling unit.

The memory estimate counts, at every level, the feature maps of two convolutions in the encoder
and two in the decoder, each with its normalisation and activation outputs (×3), kept for the
backward pass, in float32, for the whole batch: about ``batch · Σ_l voxels_l · filters_l · 12 · 4 B``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diff4mmlits import PHASES
from diff4mmlits.data.case import Case
from diff4mmlits.errors import InputError
from diff4mmlits.files import write_json_atomic
from diff4mmlits.segment.config import SegmentConfig
from diff4mmlits.segment.inputs import IntensityStats, window_hu

MIN_FEATURE_MAP_VOX = 4
ANISOTROPY_THRESHOLD = 3.0
PLAN_FILE = "plan.json"


@dataclass(frozen=True)
class PhaseIntensity:
    """HU inside the liver of one phase, over the training cases."""

    percentiles_hu: dict[str, float]
    """``p00_5``, ``p50``, ``p99_5``: HU percentiles inside the liver."""
    windowed_mean_hu: float
    windowed_sd_hu: float
    """Mean and sd inside the liver after the window (for the z-score)."""
    cases: int


@dataclass(frozen=True)
class Fingerprint:
    """What the training cases look like (nnU-Net's dataset fingerprint)."""

    spacings_mm: list[tuple[float, float, float]]
    shapes: list[tuple[int, int, int]]
    intensities: dict[str, PhaseIntensity]
    window_hu: tuple[float, float]
    case_ids: list[str] = field(default_factory=list)


def fingerprint(cases: Sequence[Case], window: tuple[float, float] = (-21.0, 189.0)) -> Fingerprint:
    """Fingerprint registered, labelled cases (spacing and shape of the annotated phase's grid).

    Intensities are pooled over every liver voxel of every case, phase by phase (phases a case
    lacks are skipped). Raises :class:`InputError` for an empty list or cases without labels.
    """
    if not cases:
        raise InputError("no training cases to plan from; the train split is empty")
    spacings, shapes = [], []
    pooled: dict[str, list[np.ndarray]] = {name: [] for name in PHASES}
    for case in cases:
        if case.label is None:
            raise InputError(f"{case.case_id}: has no label; the plan needs labelled training cases")
        spacings.append(tuple(case.annotated.spacing_mm))
        shapes.append(case.annotated.shape)
        liver = case.liver_mask
        for name, volume in case.phases.items():
            if volume.shape == liver.shape and liver.any():
                pooled[name].append(volume.array[liver].astype(np.float32))
    intensities: dict[str, PhaseIntensity] = {}
    for name, arrays in pooled.items():
        if not arrays:
            continue
        values = np.concatenate(arrays)
        clipped = window_hu(values, window)
        p_low, p_mid, p_high = np.percentile(values, [0.5, 50.0, 99.5])
        intensities[name] = PhaseIntensity(
            percentiles_hu={"p00_5": float(p_low), "p50": float(p_mid), "p99_5": float(p_high)},
            windowed_mean_hu=float(clipped.mean()),
            windowed_sd_hu=float(clipped.std()),
            cases=len(arrays),
        )
    return Fingerprint(spacings, shapes, intensities, tuple(window), [c.case_id for c in cases])


@dataclass(frozen=True)
class SegmenterPlan:
    """Everything that shapes the segmenter, derived from the fingerprint and the config."""

    target_spacing_mm: tuple[float, float, float]
    median_shape_vox: tuple[int, int, int]
    """Median case shape at the target spacing, (z, y, x)."""
    patch_size_vox: tuple[int, int, int]
    kernel_sizes: list[tuple[int, int, int]]
    """One per level (the input level first, the bottleneck last)."""
    strides: list[tuple[int, int, int]]
    """One per level; the first is (1, 1, 1)."""
    filters: list[int]
    estimated_memory_mb: float
    batch_size: int
    intensity_stats: dict[str, IntensityStats]
    window_hu: tuple[float, float]
    normalization: str
    data_spacing_mm: tuple[float, float, float] | None = None
    """The training cases' median spacing, (z, y, x) mm: the grid the scans were reconstructed on,
    which voxel-sized augmentation (blur, noise grain) is set in. None in plans written before it
    was recorded (then taken as the target spacing)."""

    def data_voxels_to_plan(self) -> tuple[float, float, float]:
        """Per axis (z, y, x): how many of this plan's voxels one of the data's voxels spans (1 where
        the plan keeps the data's spacing; about 2.2 in-plane for the cascade's fine stage two)."""
        if self.data_spacing_mm is None:
            return (1.0, 1.0, 1.0)
        return tuple(float(d / t) for d, t in zip(self.data_spacing_mm, self.target_spacing_mm))  # type: ignore[return-value]

    @property
    def depth(self) -> int:
        return len(self.strides)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["intensity_stats"] = {k: asdict(v) for k, v in self.intensity_stats.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegmenterPlan:
        values = dict(data)
        values["intensity_stats"] = {k: IntensityStats(**v) for k, v in data["intensity_stats"].items()}
        for key in ("target_spacing_mm", "median_shape_vox", "patch_size_vox", "window_hu", "data_spacing_mm"):
            if data.get(key) is not None:
                values[key] = tuple(data[key])
        values["kernel_sizes"] = [tuple(k) for k in data["kernel_sizes"]]
        values["strides"] = [tuple(s) for s in data["strides"]]
        return cls(**values)

    def describe(self) -> str:
        """A few lines for the user: what the plan decided."""
        lines = [
            f"segmenter plan: target spacing {_fmt(self.target_spacing_mm)} mm, median shape {_x(self.median_shape_vox)} vox",
            f"  patch {_x(self.patch_size_vox)} vox, batch {self.batch_size}, {self.depth} levels, "
            f"≈{self.estimated_memory_mb:.0f} MB activations",
            "  strides " + " ".join(_x(s) for s in self.strides),
            "  kernels " + " ".join(_x(k) for k in self.kernel_sizes),
            "  filters " + " ".join(str(f) for f in self.filters),
            f"  input: window {self.window_hu[0]:g}..{self.window_hu[1]:g} HU, " + (
                "z-score about each case's own liver median, sd " + ", ".join(
                    f"{k} {v.sd_hu:.0f}" for k, v in self.intensity_stats.items())
                if self.normalization == "liver" else f"{self.normalization} z-score " + ", ".join(
                    f"{k} {v.mean_hu:.0f}±{v.sd_hu:.0f}" for k, v in self.intensity_stats.items())),
        ]
        return "\n".join(lines)


def target_spacing(spacings: Sequence[Sequence[float]], shapes: Sequence[Sequence[int]] | None = None) -> tuple[float, float, float]:
    """The median spacing per axis; for strongly anisotropic data nnU-Net's exception (module doc).

    When the coarsest median spacing is more than 3× the next one *and* the image is more than 3×
    shorter along that axis (in voxels) than along the others, the coarse axis takes the 10th
    percentile of its spacings (but never finer than the other axes), so thin-slice cases are not
    thrown away by resampling.
    """
    array = np.asarray(spacings, dtype=np.float64)
    target = np.median(array, axis=0)
    coarse = int(np.argmax(target))
    others = [a for a in range(3) if a != coarse]
    if shapes is not None and target[coarse] > ANISOTROPY_THRESHOLD * max(target[others]):
        sizes = np.median(np.asarray(shapes, dtype=np.float64) * array / target, axis=0)
        if sizes[coarse] * ANISOTROPY_THRESHOLD < min(sizes[others]):
            thin = float(np.percentile(array[:, coarse], 10))
            target[coarse] = max(thin, float(max(target[others])) + 1e-5)
    return tuple(float(round(v, 4)) for v in target)  # type: ignore[return-value]


def network_topology(
    spacing_mm: Sequence[float], patch_vox: Sequence[int], max_pooling_steps: int
) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    """Kernels and strides of a U-Net for a patch at a spacing (nnU-Net's rule, see module doc)."""
    current_spacing = np.asarray(spacing_mm, dtype=np.float64)
    current_size = np.asarray(patch_vox, dtype=np.float64)
    strides: list[tuple[int, int, int]] = [(1, 1, 1)]
    kernels: list[tuple[int, int, int]] = []

    def kernel_for(spacing: np.ndarray) -> tuple[int, int, int]:
        return tuple(3 if s < 2 * spacing.min() else 1 for s in spacing)  # type: ignore[return-value]

    kernels.append(kernel_for(current_spacing))
    for _ in range(max_pooling_steps):
        big_enough = current_size >= 2 * MIN_FEATURE_MAP_VOX
        if not big_enough.any():
            break
        finest = current_spacing[big_enough].min()
        pool = big_enough & (current_spacing < 2 * finest)
        if not pool.any():
            break
        stride = tuple(2 if p else 1 for p in pool)
        strides.append(stride)  # type: ignore[arg-type]
        current_spacing = current_spacing * np.asarray(stride)
        current_size = current_size / np.asarray(stride)
        kernels.append(kernel_for(current_spacing))
    return kernels, strides


def divisibility(strides: Sequence[Sequence[int]]) -> tuple[int, int, int]:
    """Product of strides along each axis: the patch must be a multiple of it."""
    return tuple(int(np.prod([s[a] for s in strides])) for a in range(3))  # type: ignore[return-value]


def level_filters(levels: int, base: int, maximum: int) -> list[int]:
    return [min(base * 2**level, maximum) for level in range(levels)]


def estimate_memory_mb(patch_vox: Sequence[int], strides: Sequence[Sequence[int]], filters: Sequence[int], batch: int) -> float:
    """Rough activation memory of one training batch, MB (see the module docstring)."""
    voxels = float(np.prod(patch_vox))
    total = 0.0
    scale = np.ones(3)
    for stride, n_filters in zip(strides, filters):
        scale = scale * np.asarray(stride)
        total += voxels / float(np.prod(scale)) * n_filters
    return batch * total * 12 * 4 / 2**20


def _fit_patch(patch: np.ndarray, spacing: Sequence[float], config: SegmentConfig) -> tuple[np.ndarray, list, list]:
    """Round the patch down to its topology's divisibility (at least one unit per axis)."""
    for _ in range(4):
        kernels, strides = network_topology(spacing, patch, config.max_pooling_steps)
        div = np.asarray(divisibility(strides))
        fitted = np.maximum(div, np.floor(patch / div) * div)
        if np.array_equal(fitted, patch):
            break
        patch = fitted
    return patch.astype(int), kernels, strides


def plan_segmenter(fp: Fingerprint, config: SegmentConfig, spacing_mm: Sequence[float] | None = None) -> SegmenterPlan:
    """Derive target spacing, patch size and network topology from a fingerprint (pure).

    ``spacing_mm`` overrides the target spacing (the cascade's coarse and fine stages choose theirs).
    """
    spacing = target_spacing(fp.spacings_mm, fp.shapes) if spacing_mm is None else tuple(float(v) for v in spacing_mm)
    extents_mm = np.asarray(fp.shapes, dtype=np.float64) * np.asarray(fp.spacings_mm, dtype=np.float64)
    median_shape = np.maximum(1, np.round(np.median(extents_mm, axis=0) / np.asarray(spacing))).astype(int)

    if config.patch_size_vox is not None:
        patch = np.asarray(config.patch_size_vox, dtype=np.float64)
        patch, kernels, strides = _fit_patch(patch, spacing, config)
    else:
        # isotropic in mm, as large as the median shape allows
        inverse = 1.0 / np.asarray(spacing)
        patch = np.minimum(median_shape, np.round(inverse / inverse.max() * median_shape.max())).astype(np.float64)
        patch = np.maximum(patch, 2 * MIN_FEATURE_MAP_VOX)
        patch, kernels, strides = _fit_patch(patch, spacing, config)
        for _ in range(200):
            filters = level_filters(len(strides), config.base_filters, config.max_filters)
            if estimate_memory_mb(patch, strides, filters, config.batch_size) <= config.memory_budget_mb:
                break
            relative = patch / np.maximum(median_shape, 1)
            relative[patch <= 2 * MIN_FEATURE_MAP_VOX] = -1  # cannot shrink further
            if relative.max() < 0:
                break
            axis = int(np.argmax(relative))
            step = divisibility(strides)[axis]
            candidate = patch.copy()
            candidate[axis] = max(2 * MIN_FEATURE_MAP_VOX, patch[axis] - step)
            patch, kernels, strides = _fit_patch(candidate, spacing, config)
    filters = level_filters(len(strides), config.base_filters, config.max_filters)
    stats = {
        name: IntensityStats(mean_hu=v.windowed_mean_hu, sd_hu=v.windowed_sd_hu) for name, v in fp.intensities.items()
    }
    return SegmenterPlan(
        target_spacing_mm=spacing,
        median_shape_vox=tuple(int(v) for v in median_shape),  # type: ignore[arg-type]
        patch_size_vox=tuple(int(v) for v in patch),  # type: ignore[arg-type]
        kernel_sizes=[tuple(int(k) for k in kernel) for kernel in kernels],  # type: ignore[misc]
        strides=[tuple(int(s) for s in stride) for stride in strides],  # type: ignore[misc]
        filters=filters,
        estimated_memory_mb=round(estimate_memory_mb(patch, strides, filters, config.batch_size), 1),
        batch_size=config.batch_size,
        intensity_stats=stats,
        window_hu=tuple(config.window_hu),  # type: ignore[arg-type]
        normalization="dataset" if config.normalization == "auto" else config.normalization,
        data_spacing_mm=tuple(float(round(v, 4)) for v in np.median(np.asarray(fp.spacings_mm, dtype=np.float64), axis=0)),  # type: ignore[arg-type]
    )


def fingerprint_summary(fp: Fingerprint) -> dict[str, Any]:
    """The fingerprint as JSON-able numbers (median, min, max of spacing and shape; intensities)."""
    spacings = np.asarray(fp.spacings_mm)
    shapes = np.asarray(fp.shapes)
    return {
        "cases": len(fp.shapes),
        "spacing_mm": {"median": np.median(spacings, 0).tolist(), "min": spacings.min(0).tolist(), "max": spacings.max(0).tolist()},
        "shape_vox": {"median": np.median(shapes, 0).tolist(), "min": shapes.min(0).tolist(), "max": shapes.max(0).tolist()},
        "liver_hu": {k: asdict(v) for k, v in fp.intensities.items()},
        "window_hu": list(fp.window_hu),
    }


def write_plan(plan: SegmenterPlan, fp: Fingerprint | None, path: str | Path) -> Path:
    """Write ``plan.json`` (the plan, and the fingerprint it came from), atomically."""
    data: dict[str, Any] = {"plan": plan.to_dict()}
    if fp is not None:
        data["fingerprint"] = fingerprint_summary(fp)
    return write_json_atomic(path, data)


def read_plan(path: str | Path) -> SegmenterPlan:
    path = Path(path)
    if not path.is_file():
        raise InputError("plan.json not found; is this a segmenter model folder?", path)
    try:
        return SegmenterPlan.from_dict(json.loads(path.read_text())["plan"])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise InputError(f"plan.json is damaged ({type(err).__name__}); re-train the segmenter", path) from None


def _fmt(values: Sequence[float]) -> str:
    return "×".join(f"{v:.3g}" for v in values)


def _x(values: Sequence[int]) -> str:
    return "×".join(str(int(v)) for v in values)


def patch_fits(patch: Sequence[int], strides: Sequence[Sequence[int]]) -> bool:
    """True when every patch axis is a multiple of its stride product."""
    return all(p % d == 0 for p, d in zip(patch, divisibility(strides)))

