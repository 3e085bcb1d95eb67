import numpy as np

from diff4mmlits.data.case import Case
from diff4mmlits.data.volume import Volume
from diff4mmlits.synthesize.blend import (
    blend_crop,
    feather_weight,
    noise_sigma_hu,
    set_noise_inside,
    synthetic_label,
)
from diff4mmlits.synthesize.contrast import measure_tumor_contrasts, median_noise_ratio
from diff4mmlits.synthesize.crops import crop_box, dilate_tumor_mask, extract_crop


def test_feather_weight_is_one_inside_zero_beyond_the_feather():
    mask = np.zeros((20, 20, 20), bool)
    mask[8:12, 8:12, 8:12] = True
    weight = feather_weight(mask, (1.0, 1.0, 1.0), feather_mm=3.0)
    assert np.all(weight[mask] == 1.0)
    assert 1.0 > weight[10, 10, 12] > weight[10, 10, 13] > 0  # ramps down over 1 and 2 mm...
    assert weight[10, 10, 14] == 0.0 and weight[0, 0, 0] == 0.0  # ...and is zero from 3 mm on


def test_blend_keeps_far_voxels_bit_for_bit_and_dtype():
    rng = np.random.default_rng(0)
    normal = rng.integers(-200, 300, (30, 30, 30)).astype(np.int16)
    tumor = np.zeros(normal.shape, bool)
    tumor[3:7, 4:8, 5:9] = True  # near a corner: the crop is shifted and padded correctly
    box = crop_box((5, 6, 7), 16, normal.shape)
    weight = feather_weight(extract_crop(tumor, box, 0) > 0.5, (1.0, 1.0, 1.0), 2.0)
    synthetic = np.full((16, 16, 16), 1000.0, np.float32)
    out = blend_crop(normal, synthetic, weight, box)
    assert out.dtype == np.int16
    assert np.all(out[tumor] == 1000)
    near = np.zeros(normal.shape, bool)
    near[box.inside] = weight[box.in_crop] > 0
    assert np.array_equal(out[~near], normal[~near])
    assert (~near).sum() > 0.9 * normal.size


def test_crop_box_pads_volumes_smaller_than_the_crop():
    box = crop_box((2, 2, 2), 8, (4, 10, 10))
    crop = extract_crop(np.ones((4, 10, 10), np.float32), box, fill=-5.0)
    assert crop.shape == (8, 8, 8) and (crop == 1).sum() == 4 * 8 * 8 and (crop == -5).sum() == 4 * 8 * 8


def test_label_is_liver_plus_new_tumor_and_condition_mask_grows():
    liver = np.zeros((10, 10, 10), np.uint8)
    liver[2:8, 2:8, 2:8] = 1
    tumor = np.zeros(liver.shape, bool)
    tumor[4:6, 4:6, 4:6] = True
    label = synthetic_label(liver, tumor)
    assert set(np.unique(label)) == {0, 1, 2} and label[tumor].min() == 2 and (label == 1).sum() == 216 - 8
    condition = dilate_tumor_mask(tumor, 5, 3)
    assert condition[tumor].all() and condition.sum() == 2 * 4 * 4  # one 3×3 dilation in each axial slice


def test_noise_estimate_ignores_smooth_anatomy():
    rng = np.random.default_rng(1)
    z = np.linspace(0, 1, 32)[:, None, None] * np.ones((32, 32, 32))
    image = 60 + 40 * z + rng.normal(0, 15, (32, 32, 32))
    assert abs(noise_sigma_hu(image, np.ones(image.shape, bool)) - 15) < 1.0


def _ball(shape: tuple[int, int, int], centre: tuple[int, int, int], radius: float) -> np.ndarray:
    zyx = np.indices(shape)
    return sum((a - c) ** 2 for a, c in zip(zyx, centre)) <= radius**2


def test_set_noise_inside_brings_the_tumor_to_the_target_and_leaves_the_rest():
    rng = np.random.default_rng(2)
    shape = (32, 32, 32)
    tumor = _ball(shape, (16, 16, 16), 7)
    for inside_sd, target in ((20.0, 8.0), (4.0, 12.0)):
        image = (60.0 - 20.0 * tumor + rng.normal(0, 10, shape) * ~tumor + rng.normal(0, inside_sd, shape) * tumor).astype(np.float32)
        out = set_noise_inside(image, tumor, target, np.random.default_rng(3))
        assert abs(noise_sigma_hu(out, tumor) - target) < 0.15 * target
        assert np.array_equal(out[~tumor], image[~tumor])  # outside untouched
        core = _ball(shape, (16, 16, 16), 4)  # (the rim is softened toward the liver; calibration then restores the contrast)
        assert abs(out[core].mean() - image[core].mean()) < 1.0  # the enhancement kept
    tiny = _ball(shape, (16, 16, 16), 1)  # too small to measure: unchanged
    image = rng.normal(0, 10, shape).astype(np.float32)
    assert np.array_equal(set_noise_inside(image, tiny, 3.0, rng), image)


def test_noise_ratio_measures_the_tumors_noise_over_their_livers():
    rng = np.random.default_rng(4)
    shape = (40, 40, 40)
    tumor = _ball(shape, (20, 20, 20), 6)
    liver = _ball(shape, (20, 20, 20), 17)
    label = (liver.astype(np.uint8) + tumor).astype(np.uint8)
    phases = {name: Volume((100 + rng.normal(0, 16, shape) * ~tumor + rng.normal(0, 16 * ratio, shape) * tumor).astype(np.float32),
                           (1.0, 1.0, 1.0))
              for name, ratio in (("NC", 0.5), ("PVP", 1.0))}
    case = Case("toy", phases, Volume(label, (1.0, 1.0, 1.0), kind="label"), annotated_phase="PVP")
    tumors = measure_tumor_contrasts(case)
    assert len(tumors) == 1 and set(tumors[0].noise_ratio) == {"NC", "PVP"}
    ratio = median_noise_ratio(tumors)
    assert set(ratio) == {"NC", "PVP"}
    assert abs(ratio["NC"] - 0.5) < 0.08 and abs(ratio["PVP"] - 1.0) < 0.1
    assert median_noise_ratio(measure_tumor_contrasts(Case("empty", phases, Volume(liver.astype(np.uint8), (1.0, 1.0, 1.0),
                                                                                   kind="label"), annotated_phase="PVP"))) == {}
    assert median_noise_ratio([type(tumors[0]).from_dict({**tumors[0].to_dict(), "noise_ratio": None})]) == {}  # an old record
