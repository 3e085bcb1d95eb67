"""Baseline fills: the iterative masked median (Table V) and liver mean + noise."""

from __future__ import annotations

import numpy as np
import pytest

from diff4mmlits.errors import InputError
from diff4mmlits.inpaint.baselines import mean_fill, median_fill


def test_median_fill_follows_the_nearest_tissue_and_keeps_the_rest() -> None:
    image = np.zeros((2, 9, 12), np.float32)
    image[:, :, 6:] = 100.0
    hole = np.zeros(image.shape, bool)
    hole[0, 2:7, 3:9] = True
    out = median_fill(image, hole, kernel_vox=3)
    np.testing.assert_array_equal(out[0, 2:7, 3:6], 0.0)     # left of the edge: the left tissue
    np.testing.assert_array_equal(out[0, 2:7, 6:9], 100.0)   # right of it: the right tissue
    assert np.array_equal(out[~hole], image[~hole])


def test_median_fill_leaves_a_slice_with_nothing_known() -> None:
    image = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    hole = np.zeros(image.shape, bool)
    hole[0] = True
    hole[1, 1, 1] = True
    out = median_fill(image, hole)
    np.testing.assert_array_equal(out[0], image[0])
    assert out[1, 1, 1] == np.median(np.delete(image[1, :4, :4].ravel(), 5))


def test_median_kernel_must_be_odd() -> None:
    with pytest.raises(InputError, match="odd"):
        median_fill(np.zeros((1, 4, 4)), np.zeros((1, 4, 4), bool), kernel_vox=4)


def test_mean_fill_uses_the_surrounding_liver(rng: np.random.Generator) -> None:
    image = rng.normal(100, 12, (3, 20, 20)).astype(np.float32)
    image[:, :, :5] = -100.0
    liver = np.zeros(image.shape, bool)
    liver[:, :, 5:] = True
    hole = np.zeros(image.shape, bool)
    hole[:, 8:14, 8:14] = True
    flat = mean_fill(image, hole, liver, noise=False)
    np.testing.assert_allclose(flat[hole], image[liver & ~hole].mean(), rtol=1e-5)
    noisy = mean_fill(image, hole, liver, rng=np.random.default_rng(1))
    assert abs(noisy[hole].std() - image[liver & ~hole].std()) < 3.0
    assert np.array_equal(noisy[~hole], image[~hole])
    assert np.array_equal(mean_fill(image, hole, liver, rng=np.random.default_rng(1)), noisy)
