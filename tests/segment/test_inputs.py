"""Channels NC, AP, PVP, DP; the missing-phase duplication rule; window and z-score."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from diff4mmlits import PHASES
from diff4mmlits.errors import InputError
from diff4mmlits.segment.inputs import IntensityStats, normalize_channel, phase_sources, stack_channels

ALL_PATTERNS = [set(c) for n in range(1, 5) for c in itertools.combinations(PHASES, n)]


@pytest.mark.parametrize(
    ("present", "expected"),
    [
        ({"PVP"}, ("PVP", "PVP", "PVP", "PVP")),
        ({"AP", "PVP"}, ("AP", "AP", "PVP", "PVP")),
        ({"NC", "PVP"}, ("NC", "PVP", "PVP", "PVP")),
        ({"NC", "AP", "PVP"}, ("NC", "AP", "PVP", "PVP")),
        ({"AP", "PVP", "DP"}, ("AP", "AP", "PVP", "DP")),
        ({"NC", "DP"}, ("NC", "NC", "DP", "DP")),
        ({"NC"}, ("NC", "NC", "NC", "NC")),
        (set(PHASES), PHASES),
    ],
)
def test_duplication_rule_examples(present, expected) -> None:
    assert tuple(phase_sources(present)[c] for c in PHASES) == expected


@pytest.mark.parametrize("present", ALL_PATTERNS, ids=lambda p: "+".join(x for x in PHASES if x in p))
def test_every_missing_phase_pattern_is_filled_by_the_nearest_present_phase(present) -> None:
    sources = phase_sources(present)
    assert set(sources) == set(PHASES)
    for channel, source in sources.items():
        assert source in present
        if channel in present:
            assert source == channel
            continue
        gap = abs(PHASES.index(source) - PHASES.index(channel))
        nearer = [p for p in present if abs(PHASES.index(p) - PHASES.index(channel)) < gap]
        assert not nearer, f"{channel} copied {source} although {nearer} is nearer"
        tie = [p for p in present if abs(PHASES.index(p) - PHASES.index(channel)) == gap]
        assert PHASES.index(source) == max(PHASES.index(p) for p in tie)  # the later one on a tie


def test_phases_given_as_a_generator_are_read_once() -> None:
    # a generator used to be read up for the first channel, leaving the others "no usable phase"
    assert phase_sources(name for name in ("AP", "PVP")) == phase_sources({"AP", "PVP"})


def test_no_phase_at_all_is_an_input_error() -> None:
    with pytest.raises(InputError, match="at least one"):
        phase_sources([])


def test_stack_uses_only_the_model_phases_and_duplicates_the_rest(rng) -> None:
    arrays = {name: rng.normal(60 + 10 * i, 20, (4, 5, 6)).astype(np.float32) for i, name in enumerate(PHASES)}
    stacked = stack_channels(arrays, ["PVP"], (-21, 189), "case")
    assert stacked.shape == (4, 4, 5, 6) and stacked.dtype == np.float32
    for channel in range(4):  # the unimodal baseline: four copies of PVP
        np.testing.assert_array_equal(stacked[channel], stacked[2])
    full = stack_channels(arrays, PHASES, (-21, 189), "none")
    np.testing.assert_allclose(full[0], np.clip(arrays["NC"], -21, 189))
    missing_ap = {k: v for k, v in arrays.items() if k != "AP"}
    filled = stack_channels(missing_ap, PHASES, (-21, 189), "none")
    np.testing.assert_array_equal(filled[1], filled[2])  # AP ← PVP (tie with NC, later wins)
    with pytest.raises(InputError, match="none of the model's phases"):
        stack_channels({"PVP": arrays["PVP"]}, ["NC"], (-21, 189), "none")


def test_window_then_zscore() -> None:
    array = np.array([-500.0, -21.0, 84.0, 189.0, 900.0], dtype=np.float32).reshape(1, 1, 5)
    out = normalize_channel(array, (-21.0, 189.0), "dataset", IntensityStats(mean_hu=84.0, sd_hu=105.0))
    np.testing.assert_allclose(out.ravel(), [-1, -1, 0, 1, 1], atol=1e-6)
    per_case = normalize_channel(array, (-21.0, 189.0), "case")
    assert abs(per_case.mean()) < 1e-6 and per_case.std() == pytest.approx(1.0, rel=1e-5)


def test_liver_normalisation_centres_each_case_on_its_own_liver() -> None:
    # two scans of one liver and tumor whose contrast timing differs: the whole liver 20 HU darker
    liver = np.zeros((1, 4, 4), bool)
    liver[0, :, :3] = True
    stats = IntensityStats(mean_hu=70.0, sd_hu=25.0)
    early = np.full((1, 4, 4), 10.0, np.float32)
    early[liver] = 48.0
    early[0, 0, 0] = 28.0  # a tumor 20 HU below its liver
    late = early + 20.0
    early_z = normalize_channel(early, (-21.0, 189.0), "liver", stats, liver)
    late_z = normalize_channel(late, (-21.0, 189.0), "liver", stats, liver)
    np.testing.assert_allclose(early_z[liver], late_z[liver], atol=1e-6)  # the same relative image inside the liver
    assert np.median(early_z[liver]) == pytest.approx(0.0) and early_z[0, 0, 0] == pytest.approx(-20.0 / 25.0)
    # dataset normalisation keeps the 20 HU shift (0.8 sd): the darker liver looks like tumor to the network
    shift = normalize_channel(late, (-21.0, 189.0), "dataset", stats) - normalize_channel(early, (-21.0, 189.0), "dataset", stats)
    assert shift[liver].mean() == pytest.approx(0.8)


def test_liver_normalisation_needs_a_liver_and_falls_back_to_the_dataset_mean_on_an_empty_one() -> None:
    array = np.full((1, 2, 2), 90.0, np.float32)
    stats = IntensityStats(mean_hu=70.0, sd_hu=20.0)
    with pytest.raises(ValueError, match="liver mask"):
        normalize_channel(array, (-21.0, 189.0), "liver", stats)
    empty = normalize_channel(array, (-21.0, 189.0), "liver", stats, np.zeros((1, 2, 2), bool))
    np.testing.assert_allclose(empty, 1.0)
    stacked = stack_channels({"PVP": array}, ["PVP"], (-21.0, 189.0), "liver", {"PVP": stats}, np.ones((1, 2, 2), bool))
    np.testing.assert_allclose(stacked, 0.0)
