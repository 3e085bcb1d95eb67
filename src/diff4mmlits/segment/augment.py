"""CT-specific training augmentation that MONAI does not have: noise with a grain, missing phases.

A CT scan's noise is not white: the reconstruction kernel correlates it in-plane, so a scanner with a
smoother kernel or thicker slices shows coarser, blotchier grain at the same level in HU. A model that
only ever saw one grain (and nnU-Net's white noise) takes another scanner's grain for texture, and
tumor-like texture at that: on the phantom's second site, with the default site's noise and blur put
back, the tumor Dice recovered from 15 to 35 % (docs/segment.md). :class:`RandCorrelatedNoised` adds
Gaussian noise smoothed in-plane by a random grain, each phase with its own draw (the phases are
separate acquisitions).

:class:`RandPhaseDropoutd` drops phases from a sample and fills their channels as prediction fills a
study's missing phases (segment/inputs.py: a copy of the nearest present phase in time): a model so
trained has seen the two- and three-phase studies it is given (on the phantom's PVP-only studies
13.7 % tumor Dice per case against 6.5 without it; no change on four-phase studies, docs/segment.md).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform, RandomizableTransform
from scipy import ndimage

from diff4mmlits import PHASES
from diff4mmlits.segment.inputs import phase_sources


class _RandImageTransformd(RandomizableTransform, MapTransform):
    """A MONAI dict transform that draws once per sample (:meth:`randomize`: whether to act, and how),
    then calls :meth:`apply` on each image key."""

    def __init__(self, keys: Sequence[Hashable] | Hashable, prob: float) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)

    def apply(self, image: Any) -> Any:
        raise NotImplementedError

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            d[key] = self.apply(d[key])
        return d


class RandCorrelatedNoised(_RandImageTransformd):
    """Add in-plane-correlated Gaussian noise to ``(C, z, y, x)`` images, each channel on its own.

    Args:
        keys: the image keys.
        prob: probability of applying it to a sample.
        std: largest noise sd after smoothing (the image's units, z-scores here); each channel draws
            an sd in ``[0, std]``.
        grain_vox: range of the in-plane Gaussian sigma that correlates the noise, voxels.
    """

    def __init__(self, keys: Sequence[Hashable] | Hashable, prob: float = 0.1, std: float = 0.3,
                 grain_vox: tuple[float, float] = (0.5, 1.5)) -> None:
        super().__init__(keys, prob)
        if std < 0 or not 0 <= grain_vox[0] <= grain_vox[1]:
            raise ValueError("std must be ≥ 0 and grain_vox a range (low ≤ high, ≥ 0)")
        self.std = std
        self.grain_vox = grain_vox

    def noise(self, shape: tuple[int, ...]) -> np.ndarray:
        """``(C, z, y, x)`` float32: per channel, white noise smoothed in-plane, scaled to its drawn sd."""
        out = np.empty(shape, np.float32)
        for channel in range(shape[0]):
            sd = self.R.uniform(0.0, self.std)
            grain = self.R.uniform(*self.grain_vox)
            white = self.R.standard_normal(shape[1:]).astype(np.float32)
            smooth = ndimage.gaussian_filter(white, sigma=(0.0, grain, grain)) if grain > 0 else white
            out[channel] = smooth * np.float32(sd / max(float(smooth.std()), 1e-6))
        return out

    def apply(self, image: Any) -> Any:
        noise = self.noise(tuple(image.shape))
        return image + (torch.from_numpy(noise).to(image.device, image.dtype) if isinstance(image, torch.Tensor) else noise)


class RandPhaseDropoutd(_RandImageTransformd):
    """Drop phases from ``(4, z, y, x)`` images whose channels are NC, AP, PVP, DP.

    With probability ``prob`` a sample loses between one and all but one of the model's ``phases``
    (the number, then which, drawn uniformly); every channel then holds the kept phase that
    prediction would put there (:func:`~diff4mmlits.segment.inputs.phase_sources`: its own, or a
    copy of the kept phase nearest in acquisition time). A model of one phase is left as it is.

    Args:
        keys: the image keys.
        prob: probability of dropping phases from a sample.
        phases: the phases the model is trained on (its channels' sources; the others are copies).
    """

    def __init__(self, keys: Sequence[Hashable] | Hashable, prob: float = 0.1, phases: Sequence[str] = PHASES) -> None:
        super().__init__(keys, prob)
        unknown = [name for name in phases if name not in PHASES]
        if unknown or not phases:
            raise ValueError(f"phases must be a non-empty subset of {', '.join(PHASES)}")
        self.phases = tuple(name for name in PHASES if name in set(phases))
        self.sources: list[int] = list(range(len(PHASES)))

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        count = len(self.phases)
        if not self._do_transform or count < 2:
            self._do_transform = False
            return
        dropped = int(self.R.randint(1, count))
        kept = self.R.choice(count, size=count - dropped, replace=False)
        source_of = phase_sources(self.phases[int(i)] for i in kept)
        self.sources = [PHASES.index(source_of[name]) for name in PHASES]

    def apply(self, image: Any) -> Any:
        return image[self.sources]
