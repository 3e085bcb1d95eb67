"""Noise with a grain: correlated in-plane, not across slices, each phase its own, seeded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diff4mmlits import PHASES
from diff4mmlits.segment.augment import RandCorrelatedNoised, RandPhaseDropoutd


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


def _phase_image() -> torch.Tensor:
    """(4, 2, 3, 3): channel c holds the value c + 1 everywhere."""
    return torch.arange(1.0, 5.0)[:, None, None, None].expand(4, 2, 3, 3).clone()


def test_phase_dropout_fills_dropped_channels_as_prediction_fills_missing_phases() -> None:
    from diff4mmlits.segment.inputs import phase_sources

    transform = RandPhaseDropoutd(keys="image", prob=1.0).set_random_state(0)
    seen_kept = set()
    for _ in range(40):
        out = transform({"image": _phase_image()})["image"]
        values = [int(out[c, 0, 0, 0]) for c in range(4)]
        kept = sorted(set(values))
        assert 1 <= len(kept) <= 3  # at least one phase dropped, at least one kept
        expected = phase_sources(PHASES[v - 1] for v in kept)
        assert [PHASES[v - 1] for v in values] == [expected[name] for name in PHASES]
        seen_kept.add(len(kept))
    assert seen_kept == {1, 2, 3}


def test_phase_dropout_keeps_to_the_model_phases_and_is_seeded() -> None:
    # a two-phase model (AP, PVP): its NC and DP channels are copies; dropping leaves one of the two
    image = _phase_image()
    image[0], image[3] = image[1], image[2]
    transform = RandPhaseDropoutd(keys="image", prob=1.0, phases=("AP", "PVP")).set_random_state(1)
    for _ in range(10):
        values = {int(v) for v in transform({"image": image})["image"][:, 0, 0, 0]}
        assert values in ({2}, {3})
    single = RandPhaseDropoutd(keys="image", prob=1.0, phases=("PVP",))
    assert torch.equal(single({"image": image})["image"], image)
    first = RandPhaseDropoutd(keys="image", prob=0.5).set_random_state(5)
    again = RandPhaseDropoutd(keys="image", prob=0.5).set_random_state(5)
    runs = [[first({"image": _phase_image()})["image"] for _ in range(6)], [again({"image": _phase_image()})["image"] for _ in range(6)]]
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))
    assert any(not torch.equal(a, _phase_image()) for a in runs[0]) and any(torch.equal(a, _phase_image()) for a in runs[0])
    with pytest.raises(ValueError):
        RandPhaseDropoutd(keys="image", phases=("XX",))
