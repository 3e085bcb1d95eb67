"""Random training samples from the two unpaired datasets: axial slices (2D) or cubes (3D).

Each dataset is held in memory as a :class:`SampleSource`: one ``(C, Z, Y, X)`` float32 array in
[-1, 1] per case and, for the labelled side, one ``(Z, Y, X)`` label map. Every draw comes from the
``torch.Generator`` passed in, so a seed (and its saved state, on resume) fixes the batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diff4mmlits.errors import InputError

PAD_VALUE = -1.0
"""Images are padded with the bottom of the range (air in a CT window, background in MRI)."""


@dataclass
class SampleSource:
    """The volumes of one domain, normalised to [-1, 1].

    Attributes:
        images: one ``(C, Z, Y, X)`` float32 array per case.
        labels: one ``(Z, Y, X)`` integer label map per case on the same grid, or ``None``.
    """

    images: list[np.ndarray]
    labels: list[np.ndarray] | None = None

    def __post_init__(self) -> None:
        if not self.images:
            raise InputError("no volumes to train on")
        channels = {image.shape[0] for image in self.images}
        if len(channels) != 1:
            raise InputError(f"the volumes have different channel counts {sorted(channels)}")
        if self.labels is not None:
            if len(self.labels) != len(self.images):
                raise ValueError("one label map per image is needed")
            for image, label in zip(self.images, self.labels):
                if image.shape[1:] != label.shape:
                    raise ValueError(f"label shape {label.shape} differs from image shape {image.shape[1:]}")
        self._slices = np.cumsum([image.shape[1] for image in self.images])

    @property
    def channels(self) -> int:
        return int(self.images[0].shape[0])

    @property
    def n_slices(self) -> int:
        return int(self._slices[-1])

    def sample(
        self, batch_size: int, crop_vox: int, spatial_dims: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A batch: images ``(B, C, crop, crop)`` (2D) or ``(B, C, crop, crop, crop)`` (3D) and labels ``(B, 1, ...)`` (long) or ``None``.

        2D draws axial slices uniformly over all slices of all cases; 3D draws a case uniformly
        and a cube inside it. Arrays smaller than the crop are padded (images with -1, labels with 0).
        """
        images, labels = [], []
        for _ in range(batch_size):
            if spatial_dims == 2:
                flat = int(torch.randint(0, self.n_slices, (), generator=generator).item())
                case = int(np.searchsorted(self._slices, flat, side="right"))
                z = flat - (int(self._slices[case - 1]) if case else 0)
                image = self.images[case][:, z]
                label = self.labels[case][z] if self.labels is not None else None
            else:
                case = int(torch.randint(0, len(self.images), (), generator=generator).item())
                image = self.images[case]
                label = self.labels[case] if self.labels is not None else None
            image, label = random_crop(image, label, crop_vox, generator)
            images.append(torch.from_numpy(image))
            if label is not None:
                labels.append(torch.from_numpy(label.astype(np.int64)))
        batch = torch.stack(images)
        label_batch = torch.stack(labels).unsqueeze(1) if labels else None
        return batch, label_batch


def random_crop(
    image: np.ndarray, label: np.ndarray | None, crop_vox: int, generator: torch.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Crop ``image`` ``(C, *S)`` and ``label`` ``(*S)`` to ``crop_vox`` along each spatial axis (padding first if smaller)."""
    spatial = image.shape[1:]
    pads = [(0, max(0, crop_vox - size)) for size in spatial]
    if any(after for _, after in pads):
        pads = [((after // 2), after - after // 2) for _, after in pads]
        image = np.pad(image, [(0, 0), *pads], constant_values=PAD_VALUE)
        if label is not None:
            label = np.pad(label, pads, constant_values=0)
    starts = [int(torch.randint(0, size - crop_vox + 1, (), generator=generator).item()) for size in image.shape[1:]]
    region = tuple(slice(s, s + crop_vox) for s in starts)
    cropped = np.ascontiguousarray(image[(slice(None), *region)], dtype=np.float32)
    return cropped, (np.ascontiguousarray(label[region]) if label is not None else None)
