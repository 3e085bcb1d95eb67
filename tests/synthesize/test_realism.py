"""The realism measures bench_synthesize.py reports: a real-vs-synthetic classifier's AUC and the
cross-phase coherence of tumor contrasts."""

from __future__ import annotations

import numpy as np

from diff4mmlits.synthesize.realism import _auc, classifier_auc, cross_phase_coherence


def test_auc_counts_pairs_and_ties() -> None:
    labels = np.array([1, 1, 0, 0])
    assert _auc(np.array([0.9, 0.8, 0.1, 0.2]), labels) == 1.0
    assert _auc(np.array([0.1, 0.2, 0.9, 0.8]), labels) == 0.0
    assert _auc(np.array([0.5, 0.5, 0.5, 0.5]), labels) == 0.5
    assert _auc(np.array([0.9, 0.15, 0.1, 0.2]), labels) == 0.75  # 3 of the 4 pairs ordered


def _contrasts(rng: np.random.Generator, centres: dict[str, tuple[float, ...]], per_kind: int, spread: float):
    kinds = [kind for kind in centres for _ in range(per_kind)]
    values = np.array([centres[kind] for kind in kinds]) + rng.normal(0.0, spread, size=(len(kinds), 4))
    return values, kinds


def test_coherence_accepts_tumors_like_the_real_ones_and_refuses_others() -> None:
    rng = np.random.default_rng(0)
    centres = {"hcc": (-5.0, 40.0, -10.0, -20.0), "metastasis": (-20.0, -10.0, -30.0, -25.0)}
    real, kinds = _contrasts(rng, centres, 20, 4.0)
    alike, _ = _contrasts(rng, {"hcc": centres["hcc"]}, 30, 4.0)
    result = cross_phase_coherence(real, kinds, alike)
    assert result["coherent_share"] >= 0.8 and result["nearest_kinds"] == {"hcc": 30}
    # the average lesion: the mean of the two kinds' patterns is neither of them
    average = np.tile(np.mean(list(centres.values()), axis=0), (10, 1)) + rng.normal(0.0, 1.0, size=(10, 4))
    assert cross_phase_coherence(real, kinds, average)["coherent_share"] == 0.0
    # tau is the 90th percentile of the real tumors' own nearest-neighbour distances: 90 % of them pass
    own = cross_phase_coherence(real, kinds, real + 1e-9)
    assert own["coherent_share"] == 1.0 and own["median_distance"] < own["tau"]
    assert np.isnan(cross_phase_coherence(real, kinds, np.zeros((0, 4)))["coherent_share"])


def test_the_classifier_tells_apart_what_differs_and_not_what_does_not() -> None:
    rng = np.random.default_rng(1)
    noise = lambda n: rng.normal(0.0, 0.3, size=(n, 2, 8, 8, 8)).astype(np.float32)  # noqa: E731
    real = noise(24)
    real[:, :, 2:6, 2:6, 2:6] += 1.0  # a bright lesion in every real patch
    without = classifier_auc(real, noise(24), seed=0, splits=2, steps=40)
    assert without["auc"] >= 0.9 and without["real"] == 24 and without["synthetic"] == 24
    same = classifier_auc(noise(24), noise(24), seed=0, splits=2, steps=40)
    assert 0.2 <= same["auc"] <= 0.8
