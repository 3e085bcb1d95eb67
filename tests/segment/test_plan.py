"""The plan follows the data: target spacing, patch, kernels and strides, memory budget."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from diff4mmlits.errors import InputError
from diff4mmlits.segment.config import SegmentConfig
from diff4mmlits.segment.plan import (
    Fingerprint,
    divisibility,
    estimate_memory_mb,
    fingerprint,
    plan_segmenter,
    read_plan,
    target_spacing,
    write_plan,
)


def _fp(spacings, shapes) -> Fingerprint:
    return Fingerprint(list(spacings), list(shapes), {}, (-21.0, 189.0))


AUTO = SegmentConfig(patch_size_vox=None, memory_budget_mb=150.0, base_filters=8, max_filters=64, batch_size=2)


def test_target_spacing_is_the_median_spacing() -> None:
    assert target_spacing([(2.0, 0.8, 0.8), (3.0, 0.7, 0.7), (2.5, 0.9, 0.9)]) == (2.5, 0.8, 0.8)


def test_anisotropic_target_uses_tenth_percentile_along_the_coarse_axis() -> None:
    spacings = [(5.0, 0.8, 0.8)] * 6 + [(1.0, 0.8, 0.8)] * 5
    shapes = [(40, 512, 512)] * 6 + [(200, 512, 512)] * 5
    assert target_spacing(spacings, shapes)[0] == pytest.approx(1.0)  # 10th percentile, not the median 5.0
    assert target_spacing(spacings)[0] == pytest.approx(5.0)  # without shapes: the plain median
    assert target_spacing([(5.0, 0.8, 0.8)] * 3, [(40, 512, 512)] * 3)[0] == pytest.approx(5.0)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.5, 1.5, 1.5), (5.0, 0.8, 0.8)])
def test_plan_follows_the_spacing(spacing) -> None:
    plan = plan_segmenter(_fp([spacing] * 3, [(60, 200, 200)] * 3), AUTO)
    assert plan.target_spacing_mm == spacing
    assert all(p % d == 0 for p, d in zip(plan.patch_size_vox, divisibility(plan.strides)))
    assert plan.estimated_memory_mb <= AUTO.memory_budget_mb
    assert plan.strides[0] == (1, 1, 1) and len(plan.kernel_sizes) == len(plan.strides) == len(plan.filters)
    coarse = spacing[0] / spacing[1] >= 2
    if coarse:
        # a slice axis 6x coarser: no 3-wide kernel along z at full resolution, z pooled later than y/x
        assert plan.kernel_sizes[0][0] == 1 and plan.strides[1][0] == 1 and plan.strides[1][1] == 2
        # and the patch covers a similar extent in mm along z as in-plane or less (not 3x more voxels)
        assert plan.patch_size_vox[0] < plan.patch_size_vox[1]
    else:
        assert plan.kernel_sizes[0] == (3, 3, 3) and plan.strides[1] == (2, 2, 2)


def test_patch_shrinks_with_the_memory_budget_and_not_beyond_the_image() -> None:
    fp = _fp([(1.0, 1.0, 1.0)] * 3, [(64, 64, 64)] * 3)
    big = plan_segmenter(fp, AUTO.model_copy(update={"memory_budget_mb": 10_000.0}))
    small = plan_segmenter(fp, AUTO.model_copy(update={"memory_budget_mb": 20.0}))
    assert big.patch_size_vox == (64, 64, 64)  # capped at the median shape
    assert np.prod(small.patch_size_vox) < np.prod(big.patch_size_vox)
    assert small.estimated_memory_mb <= 20.0
    assert estimate_memory_mb(small.patch_size_vox, small.strides, small.filters, 2) == pytest.approx(small.estimated_memory_mb, abs=0.1)


def test_fixed_patch_is_kept_and_median_shape_uses_the_target_spacing() -> None:
    fp = _fp([(2.0, 1.0, 1.0), (4.0, 1.0, 1.0), (2.0, 1.0, 1.0)], [(50, 100, 100), (25, 100, 100), (50, 100, 100)])
    plan = plan_segmenter(fp, SegmentConfig(patch_size_vox=(32, 64, 64)))
    assert plan.patch_size_vox == (32, 64, 64)
    assert plan.median_shape_vox == (50, 100, 100)  # every case is 100 mm deep


def test_fingerprint_reads_liver_statistics(tiny_case) -> None:
    cases = [tiny_case(f"c{i}", seed=i) for i in range(2)]
    fp = fingerprint(cases, window=(-21.0, 189.0))
    liver_pvp = np.concatenate([c.phases["PVP"].array[c.liver_mask] for c in cases])
    assert fp.intensities["PVP"].windowed_mean_hu == pytest.approx(float(np.clip(liver_pvp, -21, 189).mean()), rel=1e-5)
    assert fp.intensities["PVP"].percentiles_hu["p50"] == pytest.approx(float(np.median(liver_pvp)), rel=1e-5)
    assert fp.spacings_mm == [(2.0, 1.5, 1.5)] * 2 and fp.case_ids == ["c0", "c1"]
    with pytest.raises(InputError, match="train split is empty"):
        fingerprint([])


def test_plan_round_trips_through_plan_json(tiny_case, tmp_path) -> None:
    fp = fingerprint([tiny_case()])
    plan = plan_segmenter(fp, AUTO)
    write_plan(plan, fp, tmp_path / "plan.json")
    assert read_plan(tmp_path / "plan.json") == plan
    assert "target spacing 2×1.5×1.5 mm" in plan.describe()
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="damaged"):
        read_plan(tmp_path / "bad.json")


def test_a_single_model_plans_the_dataset_z_score_for_auto_normalisation(tiny_case) -> None:
    fp = fingerprint([tiny_case()])
    assert AUTO.normalization == "auto"
    assert plan_segmenter(fp, AUTO).normalization == "dataset"
    assert plan_segmenter(fp, AUTO.model_copy(update={"normalization": "case"})).normalization == "case"


def test_the_plan_says_which_z_score_it_uses(tiny_case) -> None:
    plan = plan_segmenter(fingerprint([tiny_case()]), AUTO)
    assert "dataset z-score NC" in plan.describe()
    liver = dataclasses.replace(plan, normalization="liver")
    assert "about each case's own liver median, sd NC" in liver.describe() and "±" not in liver.describe().splitlines()[-1]


def test_the_plan_records_the_data_spacing_that_augmentation_is_set_in(tmp_path) -> None:
    """A plan finer than the data (the cascade's stage two) says how many of its voxels one of the
    data's spans; an older plan without the record reads as the data's own grid."""
    fp = _fp([(5.0, 5.0, 5.0), (5.0, 4.6, 4.6), (5.0, 5.0, 5.0)], [(30, 48, 48)] * 3)
    at_data = plan_segmenter(fp, AUTO)
    fine = plan_segmenter(fp, AUTO, (5.0, 2.5, 2.5))
    assert at_data.data_spacing_mm == fine.data_spacing_mm == (5.0, 5.0, 5.0)
    assert at_data.data_voxels_to_plan() == (1.0, 1.0, 1.0)
    assert fine.data_voxels_to_plan() == pytest.approx((1.0, 2.0, 2.0))
    write_plan(fine, fp, tmp_path / "plan.json")
    assert read_plan(tmp_path / "plan.json") == fine
    older = dataclasses.replace(fine, data_spacing_mm=None)
    assert older.data_voxels_to_plan() == (1.0, 1.0, 1.0)
