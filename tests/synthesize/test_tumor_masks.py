import numpy as np
import pytest

from diff4mmlits.data.volume import Volume
from diff4mmlits.errors import InputError
from diff4mmlits.synthesize.config import TumorMaskConfig
from diff4mmlits.synthesize.tumor_masks import TumorParams, draw_tumor_mask, draw_tumor_masks, sample_tumor_params

SPACING = (2.0, 1.5, 1.5)


def _liver(shape=(32, 40, 40)) -> np.ndarray:
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return ((z - 15) / 12) ** 2 + ((y - 20) / 16) ** 2 + ((x - 20) / 17) ** 2 <= 1


def test_sizes_lie_in_their_class_range_and_count_in_range():
    config = TumorMaskConfig(tumors_per_case=(2, 4))
    liver = _liver()
    seen = set()
    for seed in range(20):
        params = sample_tumor_params(np.random.default_rng(seed), liver, SPACING, config)
        assert 2 <= len(params) <= 4
        for tumor in params:
            low, high = config.size_classes_mm[tumor.size_class]
            assert all(low <= a <= high for a in tumor.semi_axes_mm), (tumor.size_class, tumor.semi_axes_mm)
            seen.add(tumor.size_class)
    assert seen == set(config.size_classes_mm)


def test_masks_lie_inside_the_liver_and_centres_in_the_eroded_liver():
    liver = _liver()
    grid = Volume(liver.astype(np.uint8), SPACING, kind="label")
    config = TumorMaskConfig(erode_liver_mm=4.0)
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(liver, sampling=SPACING)
    for seed in range(6):
        for tumor in sample_tumor_params(np.random.default_rng(seed), liver, SPACING, config):
            assert depth[tuple(int(c) for c in tumor.centre_vox)] >= 4.0
            mask = draw_tumor_mask(tumor, grid, liver)
            assert mask.any() and not (mask & ~liver).any()
            unclipped = draw_tumor_mask(tumor, grid)
            assert mask.sum() <= unclipped.sum()


def test_drawing_is_deterministic_and_recorded_params_redraw_the_same_mask():
    liver = _liver()
    grid = Volume(liver.astype(np.uint8), SPACING, kind="label")
    config = TumorMaskConfig()
    a = sample_tumor_params(np.random.default_rng(3), liver, SPACING, config)
    b = sample_tumor_params(np.random.default_rng(3), liver, SPACING, config)
    assert a == b
    redrawn = [TumorParams.from_dict(t.to_dict()) for t in a]
    assert np.array_equal(draw_tumor_masks(a, grid, liver), draw_tumor_masks(redrawn, grid, liver))
    c = sample_tumor_params(np.random.default_rng(4), liver, SPACING, config)
    assert not np.array_equal(draw_tumor_masks(a, grid, liver), draw_tumor_masks(c, grid, liver))


def test_ellipsoid_volume_and_elastic_deformation():
    grid = Volume(np.zeros((40, 40, 40), np.uint8), (1.0, 1.0, 1.0), kind="label")
    base = dict(size_class="medium", centre_vox=(20.0, 20.0, 20.0), semi_axes_mm=(10.0, 7.0, 5.0),
                rotation_quat=(0.0, 0.0, 0.0, 1.0), elastic_sigma_mm=4.0, elastic_seed=1)
    plain = draw_tumor_mask(TumorParams(**base, elastic_amplitude_mm=0.0), grid)
    expected = 4 / 3 * np.pi * 10 * 7 * 5
    assert abs(plain.sum() - expected) / expected < 0.05
    assert np.ptp(np.nonzero(plain)[0]) > np.ptp(np.nonzero(plain)[2])  # the long axis is z (no rotation)
    deformed = draw_tumor_mask(TumorParams(**base, elastic_amplitude_mm=2.0), grid)
    overlap = (plain & deformed).sum() / (plain | deformed).sum()
    assert 0.4 < overlap < 0.97  # deformed, yet the same tumor


def test_cap_on_semi_axes_and_bad_input():
    liver = _liver()
    params = sample_tumor_params(np.random.default_rng(0), liver, SPACING, TumorMaskConfig(tumors_per_case=(5, 5)), max_semi_axis_mm=4.0)
    assert all(max(t.semi_axes_mm) <= 4.0 for t in params)
    with pytest.raises(InputError, match="liver mask is empty"):
        sample_tumor_params(np.random.default_rng(0), np.zeros((8, 8, 8), bool), SPACING, TumorMaskConfig())
    with pytest.raises(InputError, match="not size classes"):
        sample_tumor_params(np.random.default_rng(0), liver, SPACING, TumorMaskConfig(size_class_weights={"huge": 1.0}))


def _kept_share(config: TumorMaskConfig, real_axes_mm: tuple[float, float, float]) -> float:
    """The share of the drawn tumors' voxels that the liver keeps (drawn in the liver / drawn alone)."""
    from diff4mmlits.synthesize.contrast import TumorContrast

    liver = _liver((40, 56, 56))
    grid = Volume(liver.astype(np.uint8), SPACING, kind="label")
    profile = {"NC": -10.0, "AP": 5.0, "PVP": -20.0, "DP": -15.0}
    real = [TumorContrast("a", 100, 1.0, (0, 0, 0), profile, {}, real_axes_mm)]
    kept = whole = 0
    for seed in range(30):
        for tumor in sample_tumor_params(np.random.default_rng(seed), liver, SPACING, config, real_tumors=real):
            kept += int(draw_tumor_mask(tumor, grid, liver).sum())
            whole += int(draw_tumor_mask(tumor, grid).sum())
    return kept / whole


def test_big_tumors_are_placed_deep_enough_that_the_liver_does_not_cut_them():
    """A centre anywhere in the liver let the surface cut a big tumor (a smaller, flattened copy of the
    real one it was drawn from). Now a centre lies a mean semi-axis deep (where the liver allows)."""
    big = (14.0, 10.0, 9.0)
    assert _kept_share(TumorMaskConfig(depth_factor=1.0), big) > 0.95
    assert _kept_share(TumorMaskConfig(depth_factor=0.0), big) < 0.9  # as before


def test_size_emphasis_draws_the_small_real_tumors_more_often():
    """size_emphasis = 1: a real tumor ten times smaller is drawn ten times as often; 0 keeps the
    dataset's distribution (each real tumor alike)."""
    from diff4mmlits.synthesize.contrast import TumorContrast

    profile = {"NC": -10.0, "AP": 5.0, "PVP": -20.0, "DP": -15.0}
    real = [TumorContrast(f"c{i}", voxels, 1.0, (0, 0, 0), profile, {}, axes)
            for i, (voxels, axes) in enumerate([(10, (2.0, 2.0, 2.0)), (100, (5.0, 4.0, 4.0))])]

    def share_small(emphasis: float) -> float:
        config = TumorMaskConfig(size_emphasis=emphasis, size_jitter=0.0)
        drawn = [t.reference for seed in range(300)
                 for t in sample_tumor_params(np.random.default_rng(seed), _liver(), SPACING, config, real_tumors=real)]
        return float(np.mean(np.array(drawn) == 0))

    assert 0.4 < share_small(0.0) < 0.6
    assert 0.85 < share_small(1.0) < 0.96  # 10 / 11 expected
    with pytest.raises(ValueError):
        TumorMaskConfig(size_emphasis=-1.0)


def test_profile_from_any_draws_the_kind_apart_from_the_shape():
    """profile_from = shape: a small tumor always has the small real tumor's profile; any: the
    profile is drawn on its own, so small tumors get the large one's kind too, and the record says
    which real tumor gave it."""
    from diff4mmlits.synthesize.contrast import TumorContrast

    dark = {"NC": -20.0, "AP": -30.0, "PVP": -60.0, "DP": -40.0}
    bright = {"NC": -5.0, "AP": 40.0, "PVP": -10.0, "DP": -10.0}
    real = [TumorContrast("a", 10, 0.1, (0, 0, 0), bright, {}, (2.0, 2.0, 2.0)),
            TumorContrast("b", 200, 2.0, (0, 0, 0), dark, {}, (6.0, 5.0, 5.0))]

    def small_tumors(profile_from: str) -> list:
        config = TumorMaskConfig(profile_from=profile_from, size_jitter=0.0, profile_jitter=0.0)
        return [t for seed in range(200)
                for t in sample_tumor_params(np.random.default_rng(seed), _liver(), SPACING, config, real_tumors=real)
                if t.reference == 0]

    same = small_tumors("shape")
    assert same and all(t.profile_hu["PVP"] == -10.0 and t.profile_reference == -1 for t in same)
    mixed = small_tumors("any")
    dark_small = [t for t in mixed if t.profile_hu["PVP"] == -60.0]
    assert 0.3 < len(dark_small) / len(mixed) < 0.7
    assert all(t.profile_reference == 1 for t in dark_small)
    assert all(TumorParams.from_dict(t.to_dict()) == t for t in mixed[:5])
