"""Hybrid training data (paper §III-C): real registered cases plus synthetic cases, cropped and augmented.

Each training sample is drawn afresh: with probability ``synthetic_ratio`` a synthetic case (read
from ``RUN/synthetic/`` offline, or painted on the fly into a random normal CT by the synthesize
stage's :class:`TumorPainter`), otherwise a real registered case. Then MONAI transforms: pad to
the patch, a random crop centred on background / liver / tumor in the config's ratios (biased toward
tumors), and nnU-Net v2's default augmentation (rotation, scaling, noise, blur, brightness,
contrast, simulated low resolution, gamma, mirroring; :func:`build_augmentation`).

Randomness: sample ``i`` of epoch ``e`` on rank ``r`` draws everything from
``np.random.default_rng([seed, r, e, i])``, so a run is reproducible whatever the number of
loader workers, and a resumed run draws what the uninterrupted one would have.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from diff4mmlits.data.case import Case
from diff4mmlits.data.volume import Volume
from diff4mmlits.errors import InputError
from diff4mmlits.segment.config import SegmentConfig
from diff4mmlits.segment.inputs import stack_channels
from diff4mmlits.segment.plan import SegmenterPlan
from diff4mmlits.segment.resample import resample_to_spacing
from diff4mmlits.synthesize.painter import TumorPainter


@dataclass(frozen=True)
class PreparedCase:
    """A case as the network sees it: at the plan's spacing, normalised, four channels."""

    case_id: str
    image: np.ndarray
    """``(4, z, y, x)`` float32, channels NC, AP, PVP, DP."""
    label: np.ndarray | None
    """``(z, y, x)`` uint8 (0 background, 1 liver, 2 tumor), or None."""
    grid: Volume
    """The plan-spacing grid (geometry only; its array is a zero-stride placeholder)."""


LIVER_EXTRA = "liver"
"""Name of the extra volume that carries stage one's liver (1 = liver) into an unlabelled case."""


def case_liver(case: Case) -> np.ndarray:
    """The liver (and its tumors) of a case, boolean on its annotated grid: the label's, else the
    ``LIVER_EXTRA`` extra's. Raises :class:`InputError` when it has neither."""
    if case.label is not None:
        return case.liver_mask
    if LIVER_EXTRA in case.extras:
        return case.extras[LIVER_EXTRA].array > 0
    raise InputError(f"{case.case_id}: liver normalisation needs the liver (a label, or stage one's liver); "
                     "use a cascade or another segment.normalization")


def resample_case(case: Case, spacing_mm: tuple[float, float, float]) -> Case:
    """A registered case with every phase (and the label, extras) at ``spacing_mm``."""
    case.require_registered()
    phases = {name: resample_to_spacing(volume, spacing_mm) for name, volume in case.phases.items()}
    label = resample_to_spacing(case.label, spacing_mm) if case.label is not None else None
    extras = {name: resample_to_spacing(volume, spacing_mm) for name, volume in case.extras.items()}
    return Case(case.case_id, phases, label, case.annotated_phase, extras)


def prepare_case(case: Case, plan: SegmenterPlan, phases: Sequence[str]) -> PreparedCase:
    """Resample a registered case to the plan's spacing and stack its normalised channels."""
    resampled = resample_case(case, plan.target_spacing_mm)
    return prepare_resampled(resampled, plan, phases)


def prepare_resampled(case: Case, plan: SegmenterPlan, phases: Sequence[str]) -> PreparedCase:
    """Stack the channels of a case already at the plan's spacing.

    With ``liver`` normalisation the liver is the label's (liver and tumor) or, for an unlabelled
    case, its ``LIVER_EXTRA`` extra (stage one's liver, set by prediction).
    """
    image = stack_channels(
        {name: v.array for name, v in case.phases.items()}, phases, plan.window_hu, plan.normalization,
        plan.intensity_stats, case_liver(case) if plan.normalization == "liver" else None,
    )
    label = case.label.array.astype(np.uint8) if case.label is not None else None
    grid_src = case.annotated
    grid = Volume(np.broadcast_to(np.uint8(0), grid_src.shape), grid_src.spacing_mm, grid_src.origin_mm, grid_src.direction, "label")
    return PreparedCase(case.case_id, image, label, grid)


def build_augmentation(plan: SegmenterPlan, config: SegmentConfig) -> Any:
    """MONAI dict transforms in nnU-Net v2's order: pad, tumor-biased crop, rotation and scaling,
    Gaussian noise, noise with a grain (ours, segment/augment.py), Gaussian blur, brightness,
    contrast, simulated low resolution, gamma (inverted and plain), phase dropout (ours), mirroring.
    Each step is off when its probability is 0 (the smoke preset)."""
    from monai.transforms import (
        Compose,
        RandAdjustContrastd,
        RandAffined,
        RandCropByLabelClassesd,
        RandFlipd,
        RandGaussianNoised,
        RandGaussianSmoothd,
        RandScaleIntensityd,
        RandScaleIntensityFixedMeand,
        RandSimulateLowResolutiond,
        SpatialPadd,
    )

    keys = ["image", "label"]
    patch = list(plan.patch_size_vox)
    transforms: list[Any] = [
        SpatialPadd(keys=keys, spatial_size=patch, mode="constant"),
        RandCropByLabelClassesd(
            keys=keys, label_key="label", spatial_size=patch, ratios=list(config.crop_class_ratios),
            num_classes=3, num_samples=1, warn=False,
        ),
    ]
    if config.rotate_prob > 0 or config.scale_prob > 0:
        # one affine draw: rotation about z (in-plane) with rotate_prob, zoom with scale_prob, as
        # nnU-Net; MONAI's rotate_range[0] is the angle about the first spatial axis (z)
        angle = math.radians(config.rotate_range_deg)
        low, high = config.scale_range
        if config.rotate_prob > 0:
            transforms.append(RandAffined(keys=keys, prob=config.rotate_prob, rotate_range=(angle, 0.0, 0.0),
                                          mode=("bilinear", "nearest"), padding_mode="border"))
        if config.scale_prob > 0:
            # MONAI scales the sampling grid by (1 + s): a zoom of z shows 1/z of the patch
            transforms.append(RandAffined(keys=keys, prob=config.scale_prob, scale_range=(1 / high - 1, 1 / low - 1),
                                          mode=("bilinear", "nearest"), padding_mode="border"))
    if config.noise_prob > 0:
        transforms.append(RandGaussianNoised(keys="image", prob=config.noise_prob, std=config.noise_std))
    # blur and grain are set in the data's voxels (the scans' own reconstruction grid): on a plan
    # grid finer than the data (the cascade's stage two) the same setting spans more plan voxels
    scale = plan.data_voxels_to_plan()
    if config.grain_noise_prob > 0:
        from diff4mmlits.segment.augment import RandCorrelatedNoised

        in_plane = (scale[1] + scale[2]) / 2
        transforms.append(RandCorrelatedNoised(keys="image", prob=config.grain_noise_prob, std=config.grain_noise_std,
                                               grain_vox=tuple(v * in_plane for v in config.grain_noise_vox)))
    if config.blur_prob > 0:
        # MONAI's sigma_x, _y, _z are the first, second and third spatial axes: our z, y, x
        sigma_z, sigma_y, sigma_x = (tuple(v * s for v in config.blur_sigma_vox) for s in scale)
        transforms.append(RandGaussianSmoothd(keys="image", prob=config.blur_prob, sigma_x=sigma_z, sigma_y=sigma_y,
                                              sigma_z=sigma_x))
    if config.brightness_prob > 0:
        transforms.append(RandScaleIntensityd(keys="image", factors=config.brightness_factor, prob=config.brightness_prob,
                                              channel_wise=config.intensity_per_channel))
    if config.contrast_prob > 0:
        transforms.append(RandScaleIntensityFixedMeand(keys="image", factors=config.contrast_factor, preserve_range=True,
                                                       prob=config.contrast_prob, channel_wise=config.intensity_per_channel))
    if config.low_resolution_prob > 0:
        transforms.append(RandSimulateLowResolutiond(keys="image", prob=config.low_resolution_prob,
                                                     zoom_range=config.low_resolution_zoom))
    if config.gamma_inverted_prob > 0:
        transforms.append(RandAdjustContrastd(keys="image", prob=config.gamma_inverted_prob, gamma=config.gamma_range,
                                              invert_image=True, retain_stats=True))
    if config.gamma_prob > 0:
        transforms.append(RandAdjustContrastd(keys="image", prob=config.gamma_prob, gamma=config.gamma_range,
                                              retain_stats=True))
    if config.phase_dropout_prob > 0:
        # last of the intensity steps: a dropped phase's channel is an exact copy, as at prediction
        from diff4mmlits.segment.augment import RandPhaseDropoutd

        transforms.append(RandPhaseDropoutd(keys="image", prob=config.phase_dropout_prob, phases=config.phases))
    if config.flip_prob > 0:
        transforms += [RandFlipd(keys=keys, prob=config.flip_prob, spatial_axis=axis) for axis in range(3)]
    return Compose(transforms)


class HybridDataset(Dataset):
    """``samples_per_epoch`` random training samples of real and synthetic cases (see module doc).

    Items: ``{"image": (4, pz, py, px) float32, "label": (1, pz, py, px) int64, "synthetic": bool}``.
    """

    def __init__(
        self,
        real: Sequence[PreparedCase],
        plan: SegmenterPlan,
        config: SegmentConfig,
        samples_per_epoch: int,
        seed: int,
        rank: int = 0,
        synthetic: Sequence[PreparedCase] = (),
        normal: Sequence[Case] = (),
        painter: TumorPainter | None = None,
        pooled: bool = False,
    ) -> None:
        """``pooled``: ``synthetic`` is set each epoch from a :class:`~diff4mmlits.segment.synthetic_pool.SyntheticPool`."""
        if not real and not synthetic and not normal and not pooled:
            raise ValueError("a training set needs at least one real or synthetic case")
        if normal and painter is None:
            raise ValueError("normal cases for on-the-fly synthesis need a painter")
        self.real = list(real)
        self.synthetic = list(synthetic)
        self.normal = list(normal)
        self.painter = painter
        self.plan = plan
        self.phases = tuple(config.phases)
        self.ratio = config.synthetic_ratio if (self.synthetic or self.normal or pooled) else 0.0
        if not self.real:
            self.ratio = 1.0
        self.samples_per_epoch = samples_per_epoch
        self.seed = seed
        self.rank = rank
        self.epoch = 0
        self.transforms = build_augmentation(plan, config)
        # the synthetic samples' augmentation: the same, with segment.synthetic_augmentation's settings
        synthetic_config = config.synthetic_sample_config()
        self.synthetic_transforms = (self.transforms if synthetic_config == config
                                     else build_augmentation(plan, synthetic_config))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.samples_per_epoch

    def draw_case(self, rng: np.random.Generator) -> tuple[PreparedCase, bool]:
        """A real case, or a synthetic one (offline, or painted now into a normal CT)."""
        if rng.random() < self.ratio:
            if self.normal:
                normal = self.normal[int(rng.integers(len(self.normal)))]
                painted = self.painter.paint(normal, rng)  # type: ignore[union-attr]
                if np.allclose(painted.annotated.spacing_mm, self.plan.target_spacing_mm):
                    return prepare_resampled(painted, self.plan, self.phases), True
                return prepare_case(painted, self.plan, self.phases), True
            return self.synthetic[int(rng.integers(len(self.synthetic)))], True
        return self.real[int(rng.integers(len(self.real)))], False

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, self.rank, self.epoch, int(index)])
        prepared, is_synthetic = self.draw_case(rng)
        if prepared.label is None:
            raise ValueError(f"{prepared.case_id}: a training case needs a label")
        transforms = self.synthetic_transforms if is_synthetic else self.transforms
        transforms.set_random_state(seed=int(rng.integers(2**31 - 1)))
        sample = {"image": torch.from_numpy(prepared.image), "label": torch.from_numpy(prepared.label[None].astype(np.int64))}
        out = transforms(sample)
        out = out[0] if isinstance(out, list) else out
        return {
            "image": _plain(out["image"]).float(),
            "label": _plain(out["label"]).long(),
            "synthetic": is_synthetic,
        }


def _plain(tensor: Any) -> torch.Tensor:
    """A plain ``torch.Tensor`` (MONAI may return a MetaTensor)."""
    from monai.utils import convert_to_tensor

    return convert_to_tensor(tensor, track_meta=False)
