"""Hybrid training samples: patch shape, tumor-biased crops, determinism, real/synthetic mix."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from diff4mmlits.config import resolve_config
from diff4mmlits.segment.dataset import HybridDataset, prepare_case, resample_case
from diff4mmlits.segment.plan import fingerprint, plan_segmenter

ALWAYS = {"flip_prob": 1.0, "rotate_prob": 1.0, "scale_prob": 1.0, "noise_prob": 1.0, "blur_prob": 1.0,
          "brightness_prob": 1.0, "contrast_prob": 1.0, "low_resolution_prob": 1.0, "gamma_prob": 1.0,
          "gamma_inverted_prob": 1.0, "phase_dropout_prob": 1.0}
NEVER = {key: 0.0 for key in ALWAYS}


@pytest.fixture
def setup(tiny_case):
    cases = [tiny_case(f"c{i}", seed=i) for i in range(2)]
    config = resolve_config("smoke").segment
    plan = plan_segmenter(fingerprint(cases), config)
    return cases, config, plan


def test_samples_have_the_patch_shape_and_are_reproducible(setup) -> None:
    cases, config, plan = setup
    prepared = [prepare_case(c, plan, config.phases) for c in cases]
    dataset = HybridDataset(prepared, plan, config, samples_per_epoch=8, seed=3)
    item = dataset[5]
    assert item["image"].shape == (4, *plan.patch_size_vox) and item["image"].dtype == torch.float32
    assert item["label"].shape == (1, *plan.patch_size_vox) and item["label"].dtype == torch.int64
    assert torch.equal(dataset[5]["image"], item["image"])  # the same sample index draws the same sample
    dataset.set_epoch(1)
    assert not torch.equal(dataset[5]["image"], item["image"])  # another epoch, another draw


def test_crops_are_biased_toward_tumors(setup) -> None:
    cases, config, plan = setup
    prepared = [prepare_case(c, plan, config.phases) for c in cases]
    tumor_share = np.mean([(c.label == 2).mean() for c in prepared])
    biased = HybridDataset(prepared, plan, config.model_copy(update={"crop_class_ratios": (0.0, 0.0, 1.0)}), 12, seed=0)
    uniform = HybridDataset(prepared, plan, config.model_copy(update={"crop_class_ratios": (1.0, 0.0, 0.0)}), 12, seed=0)
    with_tumor = np.mean([(biased[i]["label"] == 2).any().item() for i in range(12)])
    tumor_voxels = np.mean([(biased[i]["label"] == 2).float().mean().item() for i in range(12)])
    assert with_tumor == 1.0
    assert tumor_voxels > 2 * tumor_share
    assert tumor_voxels > np.mean([(uniform[i]["label"] == 2).float().mean().item() for i in range(12)])


def tumor_free_normal_cases(case, plan) -> list:
    """``case`` with its tumors relabelled as liver, resampled to the plan: normal CT to paint into."""
    label = case.label.with_array(np.minimum(case.label.array, 1))
    return [resample_case(type(case)(case.case_id, case.phases, label), plan.target_spacing_mm)]


def test_on_the_fly_synthesis_mixes_in_painted_cases(setup, painter) -> None:
    cases, config, plan = setup
    prepared = [prepare_case(cases[0], plan, config.phases)]
    normal = tumor_free_normal_cases(cases[1], plan)
    config = config.model_copy(update={"synthetic_ratio": 0.5, "crop_class_ratios": (0.0, 0.0, 1.0)})
    dataset = HybridDataset(prepared, plan, config, 40, seed=0, normal=normal, painter=painter)
    items = [dataset[i] for i in range(40)]
    share = np.mean([item["synthetic"] for item in items])
    assert 0.25 < share < 0.75
    assert all((item["label"] == 2).any() for item in items if item["synthetic"])  # painted tumors are cropped


@pytest.mark.parametrize("augmentation", [{"grain_noise_prob": 1.0}, {"blur_prob": 1.0, "low_resolution_prob": 1.0}])
def test_synthetic_augmentation_reaches_the_synthetic_samples_alone(setup, painter, augmentation) -> None:
    """``synthetic_augmentation``: the painted samples get the grain (or blur and low resolution), the
    real ones are drawn exactly as without the setting."""
    cases, config, plan = setup
    prepared = [prepare_case(cases[0], plan, config.phases)]
    normal = tumor_free_normal_cases(cases[1], plan)
    # the other random steps off: a step added to MONAI's Compose shifts the seeds of those after it
    config = config.model_copy(update=NEVER | {"synthetic_ratio": 0.5, "grain_noise_prob": 0.0})
    plain = HybridDataset(prepared, plan, config, 12, seed=1, normal=normal, painter=painter)
    varied = HybridDataset(prepared, plan, config.model_copy(update={"synthetic_augmentation": augmentation}), 12,
                           seed=1, normal=normal, painter=painter)
    pairs = [(plain[i], varied[i]) for i in range(12)]
    assert {a["synthetic"] for a, _ in pairs} == {True, False}
    for a, b in pairs:
        assert a["synthetic"] == b["synthetic"] and torch.equal(a["label"], b["label"])
        if a["synthetic"]:
            assert (b["image"] - a["image"]).abs().mean() > 0.05  # grain or blur (z-score units)
        else:
            assert torch.equal(a["image"], b["image"])


def test_real_only_never_draws_synthetic(setup, painter) -> None:
    cases, config, plan = setup
    prepared = [prepare_case(c, plan, config.phases) for c in cases]
    dataset = HybridDataset(prepared, plan, config.model_copy(update={"synthetic_ratio": 0.9}), 10, seed=0)
    assert not any(dataset[i]["synthetic"] for i in range(10))


def test_nnunet_augmentation_is_seeded_and_keeps_labels_whole(setup) -> None:
    cases, config, plan = setup
    prepared = [prepare_case(c, plan, config.phases) for c in cases]
    heavy = config.model_copy(update=ALWAYS)
    first = HybridDataset(prepared, plan, heavy, samples_per_epoch=4, seed=7)[2]
    again = HybridDataset(prepared, plan, heavy, samples_per_epoch=4, seed=7)[2]
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["label"], again["label"])
    assert set(torch.unique(first["label"]).tolist()) <= {0, 1, 2}  # nearest-neighbour labels under rotation and zoom
    plain = HybridDataset(prepared, plan, config.model_copy(update=NEVER), samples_per_epoch=4, seed=7)[2]
    assert not torch.equal(first["image"], plain["image"])


def test_brightness_and_contrast_are_drawn_for_each_phase(setup) -> None:
    """nnU-Net's unsynchronised channels: one phase's scale is not another's (with
    ``intensity_per_channel``); the same scale for all phases without it."""
    cases, config, plan = setup
    prepared = [prepare_case(c, plan, config.phases) for c in cases]
    only_brightness = {**NEVER, "brightness_prob": 1.0, "brightness_factor": 0.5, "crop_class_ratios": (1.0, 0.0, 0.0)}

    def scales(per_channel: bool) -> np.ndarray:
        plain = HybridDataset(prepared, plan, config.model_copy(update=NEVER | {"crop_class_ratios": (1.0, 0.0, 0.0)}), 4, seed=5)[1]
        bright = HybridDataset(prepared, plan, config.model_copy(update=only_brightness | {"intensity_per_channel": per_channel}), 4, seed=5)[1]
        assert torch.equal(plain["label"], bright["label"])  # the same crop: only intensities differ
        x, y = plain["image"].flatten(1).double(), bright["image"].flatten(1).double()
        return ((x * y).sum(1) / (x * x).sum(1)).numpy()  # least-squares scale per channel

    shared, separate = scales(False), scales(True)
    assert np.ptp(shared) < 1e-4 and abs(shared[0] - 1) > 1e-3
    assert np.ptp(separate) > 0.01


def test_the_paper_preset_augments_at_nnunet_strength() -> None:
    from diff4mmlits.segment.dataset import build_augmentation

    config = resolve_config("paper").segment
    names = [type(t).__name__ for t in build_augmentation(plan_for_names(), config).transforms]
    for name in ("RandAffined", "RandGaussianNoised", "RandGaussianSmoothd", "RandScaleIntensityd",
                 "RandScaleIntensityFixedMeand", "RandSimulateLowResolutiond", "RandAdjustContrastd", "RandFlipd"):
        assert name in names, name
    assert config.rotate_range_deg == 30.0 and config.scale_range == (0.7, 1.4) and config.deep_supervision


def test_noise_with_a_grain_joins_the_augmentation_when_its_probability_is_set() -> None:
    from diff4mmlits.segment.dataset import build_augmentation

    config = resolve_config("demo").segment
    names = [type(t).__name__ for t in build_augmentation(plan_for_names(), config).transforms]
    assert "RandCorrelatedNoised" not in names  # off by default
    on = config.model_copy(update={"grain_noise_prob": 0.3})
    names = [type(t).__name__ for t in build_augmentation(plan_for_names(), on).transforms]
    assert names.index("RandCorrelatedNoised") == names.index("RandGaussianNoised") + 1


def test_phase_dropout_comes_after_the_intensity_steps_when_its_probability_is_set() -> None:
    from diff4mmlits.segment.dataset import build_augmentation

    config = resolve_config("demo").segment
    off = config.model_copy(update={"phase_dropout_prob": 0.0})
    assert "RandPhaseDropoutd" not in [type(t).__name__ for t in build_augmentation(plan_for_names(), off).transforms]
    assert config.phase_dropout_prob == 0.25  # on by default
    names = [type(t).__name__ for t in build_augmentation(plan_for_names(), config).transforms]
    # a dropped phase's channel is an exact copy of a kept one, as prediction fills a missing phase
    assert names.index("RandPhaseDropoutd") > max(i for i, n in enumerate(names) if n == "RandAdjustContrastd")
    assert names.index("RandPhaseDropoutd") < names.index("RandFlipd")


def plan_for_names():
    from types import SimpleNamespace

    return SimpleNamespace(patch_size_vox=(16, 16, 16), data_voxels_to_plan=lambda: (1.0, 1.0, 1.0))


def test_liver_normalisation_takes_the_label_or_stage_ones_liver(setup) -> None:
    from diff4mmlits.data.case import Case
    from diff4mmlits.errors import InputError
    from diff4mmlits.segment.dataset import LIVER_EXTRA

    cases, _, plan = setup
    plan = dataclasses.replace(plan, normalization="liver")
    case = cases[0]
    labelled = prepare_case(case, plan, ("NC", "AP", "PVP", "DP"))
    liver = labelled.label > 0
    assert np.abs(np.median(labelled.image[:, liver], axis=1)).max() < 0.05  # every phase centred on its liver
    unlabelled = Case(case.case_id, case.phases, None, case.annotated_phase)
    with pytest.raises(InputError, match="needs the liver"):
        prepare_case(unlabelled, plan, ("NC", "AP", "PVP", "DP"))
    given = Case(case.case_id, case.phases, None, case.annotated_phase, {LIVER_EXTRA: case.label})
    np.testing.assert_array_equal(prepare_case(given, plan, ("NC", "AP", "PVP", "DP")).image, labelled.image)


def test_blur_and_grain_are_set_in_the_datas_voxels() -> None:
    """On stage two's grid, twice as fine in-plane as the data, the blur and the noise grain span
    twice as many voxels in-plane (the same mm as on the data), and as many across slices."""
    from types import SimpleNamespace

    from diff4mmlits.segment.augment import RandCorrelatedNoised
    from diff4mmlits.segment.dataset import build_augmentation

    config = resolve_config("demo").segment.model_copy(update={"grain_noise_prob": 0.3})
    fine = SimpleNamespace(patch_size_vox=(16, 16, 16), data_voxels_to_plan=lambda: (1.0, 2.0, 2.0))

    def steps(plan):
        transforms = build_augmentation(plan, config).transforms
        blur = next(t for t in transforms if type(t).__name__ == "RandGaussianSmoothd").rand_smooth
        grain = next(t for t in transforms if isinstance(t, RandCorrelatedNoised))
        return (blur.sigma_x, blur.sigma_y, blur.sigma_z), grain.grain_vox

    (bz, by, bx), grain = steps(plan_for_names())
    (fz, fy, fx), fine_grain = steps(fine)
    assert fz == pytest.approx(bz) and fy == pytest.approx(tuple(2 * v for v in by)) and fx == pytest.approx(tuple(2 * v for v in bx))
    assert fine_grain == pytest.approx(tuple(2 * v for v in grain))
