"""Segmentation metrics: the paper's DSC, Jaccard, sensitivity, precision (Tables I–V), HD95, lesion detection.

Structures: **tumor** = label 2; **liver** = label ≥ 1 (the liver with its tumors, as LiTS scores it).

Conventions for empty masks (P = prediction, T = truth, both boolean):

| metric | formula | T and P empty | T empty, P not | P empty, T not |
|---|---|---|---|---|
| DSC | 2|P∩T| / (|P|+|T|) | 1 | 0 | 0 |
| Jaccard | |P∩T| / |P∪T| | 1 | 0 | 0 |
| sensitivity | |P∩T| / |T| | 1 | 1 (nothing to miss) | 0 |
| precision | |P∩T| / |P| | 1 | 0 | 1 (nothing claimed) |
| HD95 (mm) | 95th percentile of symmetric surface distances | 0 | NaN | NaN |

NaN means *undefined*: it is left out of means and counted separately in summaries.

HD95 is MONAI's ``compute_hausdorff_distance`` (percentile 95, symmetric, with the voxel spacing),
computed on the bounding box of P ∪ T plus a margin, which gives the same distances faster.

Lesion-wise detection: lesions are the 26-connected components of the tumor masks. A true lesion
is *detected* when predicted tumor overlaps it by at least ``min_overlap_voxels``; a predicted
component that overlaps no true lesion by that much is a *false positive*; undetected true
lesions are *missed*. Lesion precision = (predicted components − false positives) / predicted
components, recall = detected / true lesions, F1 their harmonic mean (no lesions on either side:
all three are 1). Size classes use the equivalent-sphere diameter d = (6V/π)^(1/3) in mm.

**Three tumor Dice numbers.** The literature calls three different numbers "tumor DSC" (the same
LiTS model scores 0.80, 0.76 and 0.67 on them); every table here names which one it shows. All three
use :func:`diff4mmlits.data.measures.dice` (or its count form ``dice_from_counts``) and its empty rule:

- *per case* (``tumor_dice_per_case``, called ``tumor_dsc`` before; read under either name): the
  Dice of each case, averaged over cases (the paper's tables, like its per-case Jaccard, sensitivity
  and precision); a case without tumor in truth and prediction scores 1, with tumor in only one of them 0;
- *global* (``tumor_dice_global``): every case's voxels pooled, 2·ΣTP / (Σ|P| + Σ|T|), one number
  for the whole set (LiTS's "Dice global"; 1 when no case has tumor anywhere); ``metrics.csv``
  keeps each case's ``tumor_tp_voxels``, ``tumor_pred_voxels`` and ``tumor_true_voxels`` so that it
  can be recomputed;
- *per lesion* (``tumor_dice_per_lesion``): the rule of LiTS's per-lesion score. For every true lesion
  L (a 26-connected component of the true tumor), P_L is the union of the predicted tumor components
  that overlap L by at least one voxel; the lesion's Dice is 2|L∩P_L| / (|L| + |P_L|), 0 when no
  predicted component touches L (missed). The score is the mean over all true lesions of all cases
  (undefined without true lesions); a predicted component that touches two lesions counts whole in
  both. ``metrics.csv`` keeps each case's sum and count (``lesion_dice_sum``, ``lesions_true``) and
  its mean (``lesion_dice_mean``, undefined without lesions).

**Detection at overlap thresholds** (``EvaluateConfig.lesion_iou_thresholds``, default 0, 0.1,
0.5): a true lesion L is detected at threshold t when IoU(L, P_L) = |L∩P_L| / |L∪P_L| > t (t = 0:
any overlap, the rule above); a predicted component C is a true positive when IoU(C, T_C) > t, T_C
the union of the true lesions it overlaps. Columns ``lesions_detected_iou<t·100>`` and
``lesions_tp_pred_iou<t·100>`` per case; recall = Σ detected / Σ true lesions, precision = Σ true
positive components / Σ predicted components, F1 their harmonic mean, pooled over the set, per
threshold in the summary (``lesion_recall_iou50``, ``lesion_precision_iou50``, ``lesion_f1_iou50``…;
no lesions on a side: that ratio is 1).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from diff4mmlits import LABEL_TUMOR
from diff4mmlits.data.measures import dice, dice_from_counts, equivalent_radius_mm

FULL_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)
SIZE_CLASSES = ("small", "medium", "large")


@dataclass(frozen=True)
class OverlapScores:
    dsc: float
    jaccard: float
    sensitivity: float
    precision: float


def overlap_scores(pred: np.ndarray, truth: np.ndarray) -> OverlapScores:
    """DSC (:func:`diff4mmlits.data.measures.dice`), Jaccard, sensitivity, precision of two boolean masks (conventions in the module doc)."""
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    tp = int(np.logical_and(pred, truth).sum())
    n_pred, n_truth = int(pred.sum()), int(truth.sum())
    union = n_pred + n_truth - tp
    return OverlapScores(
        dsc=dice(pred, truth),
        jaccard=1.0 if union == 0 else tp / union,
        sensitivity=1.0 if n_truth == 0 else tp / n_truth,
        precision=1.0 if n_pred == 0 else tp / n_pred,
    )


def hausdorff95_mm(pred: np.ndarray, truth: np.ndarray, spacing_mm: tuple[float, float, float], percentile: float = 95.0) -> float:
    """Symmetric percentile Hausdorff distance in mm (0 when both empty, NaN when one is)."""
    from monai.metrics import compute_hausdorff_distance

    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    has_pred, has_truth = bool(pred.any()), bool(truth.any())
    if not has_pred and not has_truth:
        return 0.0
    if has_pred != has_truth:
        return float("nan")
    both = np.argwhere(pred | truth)
    low = np.maximum(both.min(0) - 2, 0)
    high = np.minimum(both.max(0) + 3, pred.shape)
    window = tuple(slice(a, b) for a, b in zip(low, high))
    y_pred = np.stack([~pred[window], pred[window]])[None].astype(np.float32)
    y = np.stack([~truth[window], truth[window]])[None].astype(np.float32)
    with warnings.catch_warnings():  # MONAI 1.5+ warns about one of its own internal arguments
        warnings.simplefilter("ignore", FutureWarning)
        distance = compute_hausdorff_distance(y_pred, y, include_background=False, percentile=percentile, spacing=list(spacing_mm))
    return float(distance.reshape(-1)[0])


def equivalent_diameter_mm(voxels: int, spacing_mm: tuple[float, float, float]) -> float:
    """Diameter of the sphere with the volume of ``voxels`` voxels, mm (twice :func:`equivalent_radius_mm`)."""
    return 2.0 * equivalent_radius_mm(voxels, spacing_mm)


def size_class(diameter_mm: float, limits_mm: tuple[float, float]) -> str:
    """``small`` (< limits[0]), ``medium``, or ``large`` (≥ limits[1])."""
    if diameter_mm < limits_mm[0]:
        return "small"
    return "medium" if diameter_mm < limits_mm[1] else "large"


@dataclass(frozen=True)
class LesionDetection:
    """Lesion-wise detection counts of one case (see the module doc)."""

    true_lesions: int
    predicted_lesions: int
    detected: int
    missed: int
    false_positives: int
    true_by_size: dict[str, int]
    detected_by_size: dict[str, int]
    false_positives_by_size: dict[str, int]

    @property
    def precision(self) -> float:
        if self.predicted_lesions == 0:
            return 1.0
        return (self.predicted_lesions - self.false_positives) / self.predicted_lesions

    @property
    def recall(self) -> float:
        return 1.0 if self.true_lesions == 0 else self.detected / self.true_lesions

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def lesion_detection(
    pred: np.ndarray, truth: np.ndarray, spacing_mm: tuple[float, float, float],
    min_overlap_voxels: int = 1, size_limits_mm: tuple[float, float] = (10.0, 20.0),
) -> LesionDetection:
    """Match connected tumor components of prediction and truth (boolean masks)."""
    truth_components, n_truth = ndimage.label(np.asarray(truth, dtype=bool), structure=FULL_CONNECTIVITY)
    pred_components, n_pred = ndimage.label(np.asarray(pred, dtype=bool), structure=FULL_CONNECTIVITY)
    # overlap[i, j]: voxels shared by true lesion i and predicted component j (0 = none)
    pairs = truth_components.astype(np.int64) * (n_pred + 1) + pred_components
    overlap = np.bincount(pairs.ravel(), minlength=(n_truth + 1) * (n_pred + 1)).reshape(n_truth + 1, n_pred + 1)
    matched = overlap[1:, 1:] >= max(1, min_overlap_voxels)
    truth_sizes = np.bincount(truth_components.ravel(), minlength=n_truth + 1)[1:]
    pred_sizes = np.bincount(pred_components.ravel(), minlength=n_pred + 1)[1:]
    true_by = dict.fromkeys(SIZE_CLASSES, 0)
    detected_by = dict.fromkeys(SIZE_CLASSES, 0)
    fp_by = dict.fromkeys(SIZE_CLASSES, 0)
    detected = 0
    for i in range(n_truth):
        cls = size_class(equivalent_diameter_mm(int(truth_sizes[i]), spacing_mm), size_limits_mm)
        true_by[cls] += 1
        if matched[i].any():
            detected += 1
            detected_by[cls] += 1
    false_positives = 0
    for j in range(n_pred):
        if not matched[:, j].any():
            false_positives += 1
            fp_by[size_class(equivalent_diameter_mm(int(pred_sizes[j]), spacing_mm), size_limits_mm)] += 1
    return LesionDetection(
        true_lesions=int(n_truth), predicted_lesions=int(n_pred), detected=detected, missed=int(n_truth) - detected,
        false_positives=false_positives, true_by_size=true_by, detected_by_size=detected_by, false_positives_by_size=fp_by,
    )


@dataclass(frozen=True)
class LesionOverlap:
    """Per-lesion Dice and detection at IoU thresholds of one case (see the module doc).

    ``lesion_dice``: one Dice per true lesion; ``detected[t]``: true lesions with IoU(L, P_L) > t;
    ``true_positive_predictions[t]``: predicted components with IoU(C, T_C) > t.
    """

    lesion_dice: tuple[float, ...]
    """Dice of each true lesion against P_L (0 when missed), in label order."""
    predicted_components: int
    detected: dict[float, int]
    true_positive_predictions: dict[float, int]


def threshold_name(threshold: float) -> str:
    """``0.5`` → ``iou50`` (column suffix of a detection threshold)."""
    return f"iou{round(100 * threshold)}"


def lesion_overlap(pred: np.ndarray, truth: np.ndarray, thresholds: tuple[float, ...] = (0.0, 0.1, 0.5)) -> LesionOverlap:
    """Per-lesion Dice and detection counts at IoU ``thresholds`` of two boolean tumor masks."""
    truth_components, n_truth = ndimage.label(np.asarray(truth, dtype=bool), structure=FULL_CONNECTIVITY)
    pred_components, n_pred = ndimage.label(np.asarray(pred, dtype=bool), structure=FULL_CONNECTIVITY)
    pairs = truth_components.astype(np.int64) * (n_pred + 1) + pred_components
    overlap = np.bincount(pairs.ravel(), minlength=(n_truth + 1) * (n_pred + 1)).reshape(n_truth + 1, n_pred + 1)[1:, 1:]
    truth_sizes = np.bincount(truth_components.ravel(), minlength=n_truth + 1)[1:]
    pred_sizes = np.bincount(pred_components.ravel(), minlength=n_pred + 1)[1:]
    touching = overlap > 0
    dices, truth_iou = [], []
    for i in range(n_truth):
        shared = int(overlap[i].sum())  # L ∩ P_L: P_L's components meet L only where they overlap it
        joined = int(pred_sizes[touching[i]].sum())
        dices.append(dice_from_counts(shared, int(truth_sizes[i]), joined))
        truth_iou.append(shared / (int(truth_sizes[i]) + joined - shared))
    pred_iou = []
    for j in range(n_pred):
        shared = int(overlap[:, j].sum())
        joined = int(truth_sizes[touching[:, j]].sum())
        pred_iou.append(shared / (int(pred_sizes[j]) + joined - shared))
    return LesionOverlap(
        lesion_dice=tuple(dices), predicted_components=int(n_pred),
        detected={t: sum(v > t for v in truth_iou) for t in thresholds},
        true_positive_predictions={t: sum(v > t for v in pred_iou) for t in thresholds},
    )


def case_metrics(
    pred_label: np.ndarray, truth_label: np.ndarray, spacing_mm: tuple[float, float, float],
    min_overlap_voxels: int = 1, size_limits_mm: tuple[float, float] = (10.0, 20.0), hd_percentile: float = 95.0,
    iou_thresholds: tuple[float, ...] = (0.0, 0.1, 0.5),
) -> dict[str, float | int]:
    """Every metric of one case as a flat row (``tumor_dice_per_case``, ``liver_hd95_mm``, ``lesion_f1``…).

    ``spacing_mm``: voxel size, mm; volumes in mL, distances in mm, overlaps as ratios in [0, 1].
    """
    if pred_label.shape != truth_label.shape:
        raise ValueError(f"prediction {pred_label.shape} and truth {truth_label.shape} differ in shape")
    row: dict[str, float | int] = {}
    for name, pred, truth in (
        ("tumor", pred_label == LABEL_TUMOR, truth_label == LABEL_TUMOR),
        ("liver", pred_label > 0, truth_label > 0),
    ):
        scores = overlap_scores(pred, truth)
        row["tumor_dice_per_case" if name == "tumor" else f"{name}_dsc"] = scores.dsc
        row[f"{name}_jaccard"] = scores.jaccard
        row[f"{name}_sensitivity"] = scores.sensitivity
        row[f"{name}_precision"] = scores.precision
        row[f"{name}_hd95_mm"] = hausdorff95_mm(pred, truth, spacing_mm, hd_percentile)
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    row["tumor_volume_true_ml"] = float((truth_label == LABEL_TUMOR).sum()) * voxel_ml
    row["tumor_volume_pred_ml"] = float((pred_label == LABEL_TUMOR).sum()) * voxel_ml
    row["tumor_tp_voxels"] = int(((pred_label == LABEL_TUMOR) & (truth_label == LABEL_TUMOR)).sum())
    row["tumor_pred_voxels"] = int((pred_label == LABEL_TUMOR).sum())
    row["tumor_true_voxels"] = int((truth_label == LABEL_TUMOR).sum())
    lesions = lesion_detection(pred_label == LABEL_TUMOR, truth_label == LABEL_TUMOR, spacing_mm, min_overlap_voxels, size_limits_mm)
    row.update(
        lesions_true=lesions.true_lesions, lesions_pred=lesions.predicted_lesions, lesions_detected=lesions.detected,
        lesions_missed=lesions.missed, lesions_false_positive=lesions.false_positives,
        lesion_precision=lesions.precision, lesion_recall=lesions.recall, lesion_f1=lesions.f1,
    )
    overlaps = lesion_overlap(pred_label == LABEL_TUMOR, truth_label == LABEL_TUMOR, iou_thresholds)
    row["lesion_dice_sum"] = float(sum(overlaps.lesion_dice))
    row["lesion_dice_mean"] = float(np.mean(overlaps.lesion_dice)) if overlaps.lesion_dice else float("nan")
    for t in iou_thresholds:
        row[f"lesions_detected_{threshold_name(t)}"] = overlaps.detected[t]
        row[f"lesions_tp_pred_{threshold_name(t)}"] = overlaps.true_positive_predictions[t]
    for cls in SIZE_CLASSES:
        row[f"lesions_true_{cls}"] = lesions.true_by_size[cls]
        row[f"lesions_detected_{cls}"] = lesions.detected_by_size[cls]
        row[f"lesions_false_positive_{cls}"] = lesions.false_positives_by_size[cls]
    return row
