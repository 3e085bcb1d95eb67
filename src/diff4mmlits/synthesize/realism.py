"""How real do synthetic tumors look? Two measures used by ``benchmarks/bench_synthesize.py``.

* :func:`classifier_auc` — a small 3D CNN learns to tell real from synthetic tumor patches (all
  phases as channels); its AUC on held-out patches, averaged over a few random splits. 0.5 means
  it cannot tell them apart (lower is better).
* :func:`cross_phase_coherence` — does a synthetic tumor's *pattern* across the phases look like
  a real one's? Each tumor is a vector of its per-phase tumor-to-liver contrasts, each phase
  scaled by the real tumors' spread. A synthetic tumor is coherent when its nearest real tumor is
  no farther than ``τ``, the 90th percentile of the real tumors' own (leave-one-out)
  nearest-real-neighbour distances, i.e. when it lies among the real tumors as closely as real
  tumors lie among each other. The nearest real tumor's kind is reported too.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from torch import nn

from diff4mmlits import PHASES
from diff4mmlits.data.case import Case
from diff4mmlits.data.intensity import window_map
from diff4mmlits.synthesize.contrast import TumorContrast
from diff4mmlits.synthesize.crops import crop_box, extract_crop

PATCH_WINDOW_HU = (-100.0, 250.0)


def tumor_patches(case: Case, tumors: list[TumorContrast], size: int = 16) -> np.ndarray:
    """``(N, 4, s, s, s)`` windowed patches ([-1, 1]) centred on each tumor; missing phases are zeros."""
    patches = np.zeros((len(tumors), len(PHASES)) + (size,) * 3, np.float32)
    for i, tumor in enumerate(tumors):
        box = crop_box(tumor.centre_vox, size, case.annotated.shape)
        for c, phase in enumerate(PHASES):
            if phase in case.phases:
                patches[i, c] = window_map(PATCH_WINDOW_HU).to_unit(extract_crop(case.phases[phase].array, box, fill=-1000.0), clip_input=True)
    return patches


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney U, ties counted half)."""
    positive, negative = scores[labels == 1], scores[labels == 0]
    greater = (positive[:, None] > negative[None, :]).sum() + 0.5 * (positive[:, None] == negative[None, :]).sum()
    return float(greater / (len(positive) * len(negative)))


def _classifier(channels: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv3d(channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool3d(2),
        nn.Conv3d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool3d(2),
        nn.Conv3d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(32, 1),
    )


def classifier_auc(real: np.ndarray, synthetic: np.ndarray, seed: int = 0, splits: int = 3, steps: int = 200,
                   held_out: float = 0.3) -> dict[str, float]:
    """Real-versus-synthetic AUC of a small CNN on held-out patches ``(N, C, s, s, s)``.

    Per split: both sets are shuffled, ``held_out`` of each is kept aside, the CNN trains on the
    rest with balanced batches and random flips, and the AUC is taken on the held-out patches.
    Returns ``{"auc": mean, "auc_std": spread over splits, "real": n, "synthetic": n}``.
    """
    aucs = []
    for split in range(splits):
        rng = np.random.default_rng([seed, split])
        torch.manual_seed(seed * 100 + split)
        r, s = rng.permutation(len(real)), rng.permutation(len(synthetic))
        nr, ns = max(1, int(held_out * len(real))), max(1, int(held_out * len(synthetic)))
        train_r, test_r, train_s, test_s = real[r[nr:]], real[r[:nr]], synthetic[s[ns:]], synthetic[s[:ns]]
        model = _classifier(real.shape[1])
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(steps):
            half = 16
            batch = np.concatenate([train_r[rng.integers(len(train_r), size=half)], train_s[rng.integers(len(train_s), size=half)]])
            for axis in (2, 3, 4):
                if rng.random() < 0.5:
                    batch = np.flip(batch, axis)
            labels = torch.tensor([1.0] * half + [0.0] * half)
            loss = nn.functional.binary_cross_entropy_with_logits(model(torch.from_numpy(batch.copy())).squeeze(1), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            scores = model(torch.from_numpy(np.concatenate([test_r, test_s]))).squeeze(1).numpy()
        aucs.append(_auc(scores, np.array([1] * len(test_r) + [0] * len(test_s))))
    return {"auc": float(np.mean(aucs)), "auc_std": float(np.std(aucs)), "real": len(real), "synthetic": len(synthetic)}


def contrast_matrix(tumors: list[TumorContrast], phases: tuple[str, ...] = PHASES) -> np.ndarray:
    """``(N, P)`` contrasts (HU) of tumors that have every phase in ``phases``."""
    rows = [t.vector(phases) for t in tumors]
    rows = [row for row in rows if not np.isnan(row).any()]
    return np.array(rows).reshape(-1, len(phases))


def cross_phase_coherence(real: np.ndarray, real_kinds: list[str], synthetic: np.ndarray,
                          percentile: float = 90.0) -> dict[str, object]:
    """The coherence measure of the module docstring.

    Args:
        real: ``(R, P)`` contrasts of the real tumors (R ≥ 3), HU.
        real_kinds: the kind of each real tumor (e.g. hcc, metastasis).
        synthetic: ``(S, P)`` contrasts of the synthetic tumors, HU.

    Returns ``coherent_share`` (0–1), ``tau`` (in units of the real spread), ``median_distance``
    of the synthetic tumors to their nearest real one, and ``nearest_kinds`` (counts).
    """
    scale = real.std(axis=0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    r, s = real / scale, synthetic / scale
    between = np.linalg.norm(r[:, None] - r[None, :], axis=-1)
    np.fill_diagonal(between, np.inf)
    tau = float(np.percentile(between.min(axis=1), percentile))
    if len(s) == 0:
        return {"coherent_share": float("nan"), "tau": tau, "median_distance": float("nan"), "nearest_kinds": {}}
    distance = np.linalg.norm(s[:, None] - r[None, :], axis=-1)
    nearest = distance.argmin(axis=1)
    nearest_distance = distance[np.arange(len(s)), nearest]
    return {
        "coherent_share": float(np.mean(nearest_distance <= tau)),
        "tau": tau,
        "median_distance": float(np.median(nearest_distance)),
        "nearest_kinds": dict(Counter(real_kinds[i] for i in nearest)),
    }
