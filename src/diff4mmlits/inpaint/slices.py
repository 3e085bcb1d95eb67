"""Training slices for the inpainter: windowed phases, liver and excluded (tumor) regions, random batches.

The network learns to fill holes with *tumor-free* tissue only. Every registered phase of every
training case gives axial slices; the case's closed and dilated tumor mask (the region that will be
inpainted later) is always part of the input hole, so the network never sees a tumor, and it is
excluded from every loss, so a tumor is never a target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from diff4mmlits.data.case import Case
from diff4mmlits.data.intensity import window_map
from diff4mmlits.errors import InputError
from diff4mmlits.inpaint.mask import dilate_tumor_mask
from diff4mmlits.inpaint.masks_random import blob_mask, training_mask


@dataclass(frozen=True)
class SliceSource:
    """One registered phase of one case, ready to cut training slices from.

    ``image`` ``(Z, Y, X)`` float16 in [-1, 1]; ``liver`` and ``exclude`` boolean ``(Z, Y, X)``
    (``exclude``: the closed and dilated tumor mask); ``phase_index`` into the model's phases.
    """

    case_id: str
    phase: str
    phase_index: int
    image: np.ndarray
    liver: np.ndarray
    exclude: np.ndarray

    @property
    def liver_slices(self) -> np.ndarray:
        return np.flatnonzero(self.liver.any(axis=(1, 2)))


def build_sources(cases: Sequence[Case], phases: Sequence[str], window_hu: tuple[float, float],
                  close_kernel_vox: int = 5, dilate_kernel_vox: int = 3,
                  close_kernel_mm: float | None = None, dilate_kernel_mm: float | None = None) -> list[SliceSource]:
    """Slice sources of registered, labelled cases (every phase present)."""
    sources = []
    window = window_map(window_hu)
    for case in cases:
        if case.label is None:
            raise InputError(f"{case.case_id}: has no label; the inpainter trains on labelled cases")
        case.require_registered()
        exclude = dilate_tumor_mask(case.label, close_kernel_vox, dilate_kernel_vox, close_kernel_mm, dilate_kernel_mm).array > 0
        liver = case.liver_mask & ~exclude
        for name, volume in case.phases.items():
            image = window.to_unit(np.asarray(volume.array, dtype=np.float32)).astype(np.float16)
            sources.append(SliceSource(case.case_id, name, phases.index(name), image, liver, exclude))
    if not sources:
        raise InputError("no training cases: the inpainter needs at least one registered, labelled case")
    return sources


@dataclass
class TrainingBatch:
    """A batch of crops, all ``(B, 1, S, S)`` float32 except ``phase_index`` ``(B,)``.

    ``hole``: what the network must fill (random hole ∪ excluded tumor); ``supervised_hole``: the
    random hole without the tumor; ``known``: pixels outside any hole; ``valid``: 1 − excluded.
    ``context``, ``context_hole``: ``(B, 2k, S, S)`` the k neighbour slices on each side and their
    holes (the same random hole ∪ each neighbour's own excluded tumor); ``(B, 0, S, S)`` for k = 0.
    """

    image: torch.Tensor
    hole: torch.Tensor
    supervised_hole: torch.Tensor
    known: torch.Tensor
    valid: torch.Tensor
    phase_index: torch.Tensor
    context: torch.Tensor
    context_hole: torch.Tensor

    def to(self, device: torch.device, memory_format: torch.memory_format = torch.contiguous_format) -> TrainingBatch:
        """On ``device``; the ``(B, C, S, S)`` fields in ``memory_format`` (``phase_index`` as it is)."""
        def move(tensor: torch.Tensor) -> torch.Tensor:
            if tensor.dim() == 4:
                return tensor.to(device, non_blocking=True, memory_format=memory_format)
            return tensor.to(device, non_blocking=True)

        return TrainingBatch(*(move(getattr(self, f)) for f in self.__dataclass_fields__))


def _crop_window(length: int, crop: int, centre: int, rng: np.random.Generator) -> int:
    """Start of a ``crop``-long window inside ``length`` that holds ``centre`` (random placement)."""
    if length <= crop:
        return 0
    low, high = max(0, centre - crop + 1), min(centre, length - crop)
    return int(rng.integers(low, high + 1))


def _pad_to(array: np.ndarray, size: int, value: float) -> np.ndarray:
    pad_y, pad_x = max(0, size - array.shape[0]), max(0, size - array.shape[1])
    if not (pad_y or pad_x):
        return array
    return np.pad(array, ((0, pad_y), (0, pad_x)), constant_values=value)


def neighbour_indices(z: int, depth: int, context_slices: int) -> list[int]:
    """The ``context_slices`` slice indices below and above ``z`` (in that order), clamped to the volume."""
    offsets = [*range(-context_slices, 0), *range(1, context_slices + 1)]
    return [min(max(z + o, 0), depth - 1) for o in offsets]


def sample_crop(source: SliceSource, rng: np.random.Generator, crop_vox: int, on_liver: bool, context_slices: int = 0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A random ``(image, liver, exclude, context, context_exclude)`` crop of ``crop_vox``² from one slice
    (on the liver when asked and possible); ``context`` ``(2k, S, S)`` are the neighbour slices' crops."""
    depth, height, width = source.image.shape
    liver_slices = source.liver_slices
    if on_liver and len(liver_slices):
        z = int(liver_slices[rng.integers(len(liver_slices))])
        points = np.argwhere(source.liver[z])
        cy, cx = points[int(rng.integers(len(points)))]
    else:
        z = int(rng.integers(depth))
        cy, cx = int(rng.integers(height)), int(rng.integers(width))
    y0 = _crop_window(height, crop_vox, int(cy), rng)
    x0 = _crop_window(width, crop_vox, int(cx), rng)
    window = (slice(y0, y0 + crop_vox), slice(x0, x0 + crop_vox))
    image = _pad_to(source.image[z][window].astype(np.float32), crop_vox, -1.0)
    liver = _pad_to(source.liver[z][window], crop_vox, False)
    exclude = _pad_to(source.exclude[z][window], crop_vox, False)
    near = neighbour_indices(z, depth, context_slices)
    context = np.stack([_pad_to(source.image[n][window].astype(np.float32), crop_vox, -1.0) for n in near]) if near \
        else np.zeros((0, *image.shape), np.float32)
    context_exclude = np.stack([_pad_to(source.exclude[n][window], crop_vox, False) for n in near]) if near \
        else np.zeros((0, *image.shape), bool)
    return image, liver, exclude, context, context_exclude


def make_batch(images: list[np.ndarray], holes: list[np.ndarray], excludes: list[np.ndarray], phases: list[int],
               contexts: list[np.ndarray] | None = None, context_excludes: list[np.ndarray] | None = None) -> TrainingBatch:
    """Stack crops and their random holes into a :class:`TrainingBatch` (neighbour slices when given)."""
    def stack(arrays: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(arrays).astype(np.float32))[:, None]

    random_hole, exclude = stack(holes), stack(excludes)
    hole = torch.maximum(random_hole, exclude)
    if contexts:
        context = torch.from_numpy(np.stack(contexts).astype(np.float32))
        context_hole = torch.maximum(torch.from_numpy(np.stack(context_excludes).astype(np.float32)), random_hole)
    else:
        context = context_hole = torch.zeros((len(images), 0, *images[0].shape))
    return TrainingBatch(
        image=stack(images), hole=hole, supervised_hole=random_hole * (1 - exclude), known=1 - hole,
        valid=1 - exclude, phase_index=torch.tensor(phases, dtype=torch.long), context=context, context_hole=context_hole,
    )


def sample_batch(sources: Sequence[SliceSource], rng: np.random.Generator, batch_size: int, crop_vox: int,
                 liver_slice_fraction: float, blob_fraction: float, max_hole_fraction: float,
                 context_slices: int = 0) -> TrainingBatch:
    """A random batch: a source and a slice per item, a crop, a LaMa-style or tumor-like hole (the
    same hole in the neighbour slices: a lesion spans several)."""
    images, holes, excludes, phases, contexts, context_excludes = [], [], [], [], [], []
    for _ in range(batch_size):
        source = sources[int(rng.integers(len(sources)))]
        image, liver, exclude, context, context_exclude = sample_crop(
            source, rng, crop_vox, on_liver=rng.uniform() < liver_slice_fraction, context_slices=context_slices)
        holes.append(training_mask(rng, image.shape, liver, blob_fraction, max_hole_fraction))
        images.append(image)
        excludes.append(exclude)
        phases.append(source.phase_index)
        contexts.append(context)
        context_excludes.append(context_exclude)
    return make_batch(images, holes, excludes, phases, contexts, context_excludes)


def monitor_batch(sources: Sequence[SliceSource], count: int, crop_vox: int, seed: int,
                  context_slices: int = 0) -> TrainingBatch | None:
    """A fixed batch for the training log's monitor: tumor-like holes on liver slices, from a fixed seed."""
    rng = np.random.default_rng(seed)
    images, holes, excludes, phases, contexts, context_excludes = [], [], [], [], [], []
    candidates = [s for s in sources if len(s.liver_slices)]
    for index in range(count if candidates else 0):
        source = candidates[index % len(candidates)]
        image, liver, exclude, context, context_exclude = sample_crop(source, rng, crop_vox, on_liver=True,
                                                                      context_slices=context_slices)
        hole = blob_mask(rng, image.shape, liver)
        if not (hole & ~exclude).any():
            continue
        images.append(image)
        holes.append(hole)
        excludes.append(exclude)
        phases.append(source.phase_index)
        contexts.append(context)
        context_excludes.append(context_exclude)
    return make_batch(images, holes, excludes, phases, contexts, context_excludes) if images else None
