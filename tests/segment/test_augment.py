"""Noise with a grain: correlated in-plane, not across slices, each phase its own, seeded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diff4mmlits.segment.augment import RandCorrelatedNoised


def _neighbour_correlation(noise: np.ndarray, axis: int) -> float:
    a = np.moveaxis(noise, axis, 0)
    return float(np.corrcoef(a[:-1].ravel(), a[1:].ravel())[0, 1])


def test_the_noise_is_correlated_in_plane_and_not_across_slices() -> None:
    transform = RandCorrelatedNoised(keys="image", prob=1.0, std=0.5, grain_vox=(1.2, 1.2))
    transform.set_random_state(0)
    noise = transform.noise((2, 24, 48, 48))
    assert _neighbour_correlation(noise[0], 2) > 0.6 and _neighbour_correlation(noise[0], 1) > 0.6  # grain in y, x
    assert abs(_neighbour_correlation(noise[0], 0)) < 0.05  # slices independent
    assert abs(float(np.corrcoef(noise[0].ravel(), noise[1].ravel())[0, 1])) < 0.05  # phases independent
    assert 0 < noise[0].std() <= 0.5 + 1e-6


def test_it_adds_noise_to_the_image_only_and_is_seeded() -> None:
    image = torch.zeros((4, 8, 16, 16))
    label = torch.ones((1, 8, 16, 16))
    first = RandCorrelatedNoised(keys="image", prob=1.0).set_random_state(3)({"image": image, "label": label})
    again = RandCorrelatedNoised(keys="image", prob=1.0).set_random_state(3)({"image": image, "label": label})
    assert first["image"].abs().sum() > 0 and torch.equal(first["image"], again["image"])
    assert first["label"] is label and torch.count_nonzero(image) == 0  # the input is not modified
    off = RandCorrelatedNoised(keys="image", prob=0.0)({"image": image})
    assert torch.equal(off["image"], image)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        RandCorrelatedNoised(keys="image", std=-1.0)
    with pytest.raises(ValueError):
        RandCorrelatedNoised(keys="image", grain_vox=(2.0, 1.0))
