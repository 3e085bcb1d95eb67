"""Metrics against hand-computed values on tiny arrays, including empty prediction and empty truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diff4mmlits.evaluate.metrics import (
    case_metrics,
    equivalent_diameter_mm,
    hausdorff95_mm,
    lesion_detection,
    overlap_scores,
)


def _masks():
    pred = np.zeros((1, 1, 6), dtype=bool)
    truth = np.zeros((1, 1, 6), dtype=bool)
    pred[0, 0, [0, 1, 2]] = True  # P = {0, 1, 2}
    truth[0, 0, [1, 2, 3, 4]] = True  # T = {1, 2, 3, 4}; P∩T = {1, 2}
    return pred, truth


def test_overlap_scores_by_hand() -> None:
    s = overlap_scores(*_masks())
    assert s.dsc == pytest.approx(2 * 2 / (3 + 4))
    assert s.jaccard == pytest.approx(2 / 5)
    assert s.sensitivity == pytest.approx(2 / 4)
    assert s.precision == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("pred_any", "truth_any", "expected"),
    [
        (False, False, (1.0, 1.0, 1.0, 1.0, 0.0)),  # both empty: perfect
        (True, False, (0.0, 0.0, 1.0, 0.0, math.nan)),  # empty truth: nothing to miss, all claimed wrong
        (False, True, (0.0, 0.0, 0.0, 1.0, math.nan)),  # empty prediction: all missed, nothing claimed
    ],
)
def test_empty_mask_conventions(pred_any, truth_any, expected) -> None:
    pred = np.zeros((3, 3, 3), dtype=bool)
    truth = np.zeros((3, 3, 3), dtype=bool)
    pred[1, 1, 1] = pred_any
    truth[1, 1, 1] = truth_any
    s = overlap_scores(pred, truth)
    hd = hausdorff95_mm(pred, truth, (1.0, 1.0, 1.0))
    assert (s.dsc, s.jaccard, s.sensitivity, s.precision) == expected[:4]
    assert (math.isnan(hd) and math.isnan(expected[4])) or hd == expected[4]


def test_hd95_in_mm_by_hand() -> None:
    pred, truth = _masks()
    # along x (spacing 2 mm): P→T distances {2, 0, 0} mm, T→P {0, 0, 2, 4} mm;
    # 95th percentiles (linear): 1.8 and 3.7; the symmetric HD95 is the larger
    hd = hausdorff95_mm(pred, truth, (5.0, 3.0, 2.0))
    assert hd == pytest.approx(max(np.percentile([2, 0, 0], 95), np.percentile([0, 0, 2, 4], 95)), abs=1e-4)
    assert hd == pytest.approx(3.7, abs=1e-4)
    assert hausdorff95_mm(truth, truth, (1.0, 1.0, 1.0)) == 0.0


def test_lesion_detection_counts_by_hand() -> None:
    truth = np.zeros((10, 30, 30), dtype=bool)
    pred = np.zeros_like(truth)
    truth[1:3, 1:3, 1:3] = True  # lesion A (8 voxels): detected
    truth[5:9, 10:20, 10:20] = True  # lesion B (400 voxels): missed
    pred[2, 2, 2] = True  # overlaps A
    pred[8, 27:29, 27:29] = True  # overlaps nothing: a false positive
    d = lesion_detection(pred, truth, (1.0, 1.0, 1.0), size_limits_mm=(5.0, 9.0))
    assert (d.true_lesions, d.predicted_lesions, d.detected, d.missed, d.false_positives) == (2, 2, 1, 1, 1)
    assert d.precision == pytest.approx(0.5) and d.recall == pytest.approx(0.5) and d.f1 == pytest.approx(0.5)
    # A: d = (6·8/π)^(1/3) = 2.48 mm → small; B: (6·400/π)^(1/3) = 9.14 mm → large
    assert equivalent_diameter_mm(8, (1.0, 1.0, 1.0)) == pytest.approx((48 / math.pi) ** (1 / 3))
    assert d.true_by_size == {"small": 1, "medium": 0, "large": 1}
    assert d.detected_by_size == {"small": 1, "medium": 0, "large": 0}
    assert d.false_positives_by_size == {"small": 1, "medium": 0, "large": 0}
    strict = lesion_detection(pred, truth, (1.0, 1.0, 1.0), min_overlap_voxels=2)
    assert strict.detected == 0 and strict.false_positives == 2


def test_no_lesions_anywhere_is_a_perfect_detection() -> None:
    empty = np.zeros((3, 3, 3), dtype=bool)
    d = lesion_detection(empty, empty, (1.0, 1.0, 1.0))
    assert (d.precision, d.recall, d.f1) == (1.0, 1.0, 1.0)


def test_case_metrics_uses_tumor_and_liver_labels() -> None:
    truth = np.zeros((4, 6, 6), dtype=np.uint8)
    truth[1:3, 1:5, 1:5] = 1
    truth[1:3, 2:4, 2:4] = 2
    pred = truth.copy()
    pred[pred == 2] = 1  # the tumor predicted as liver
    row = case_metrics(pred, truth, (1.0, 1.0, 1.0))
    assert row["liver_dsc"] == 1.0 and row["tumor_dsc"] == 0.0 and row["tumor_sensitivity"] == 0.0
    assert row["tumor_precision"] == 1.0 and math.isnan(row["tumor_hd95_mm"])
    assert row["lesions_true"] == 1 and row["lesions_missed"] == 1 and row["lesion_f1"] == 0.0
    assert row["tumor_volume_true_ml"] == pytest.approx(8 / 1000)
    with pytest.raises(ValueError, match="differ in shape"):
        case_metrics(pred[:2], truth, (1.0, 1.0, 1.0))


def _line(length: int, *spans: tuple[int, int]) -> np.ndarray:
    """A ``(1, 1, length)`` label with tumor (2) on each ``[start, stop)`` span."""
    label = np.zeros((1, 1, length), np.uint8)
    for start, stop in spans:
        label[0, 0, start:stop] = 2
    return label


THREE_WAYS = {  # case: (prediction, truth), tumor spans along one line of 20 voxels
    "two_lesions_one_missed_one_false_positive": (_line(20, (2, 6), (16, 18)), _line(20, (0, 4), (10, 12))),
    "empty": (_line(20), _line(20)),
    "exact": (_line(20, (0, 2)), _line(20, (0, 2))),
    "false_positive_only": (_line(20, (5, 8)), _line(20)),
}


def test_three_tumor_dice_variants_and_detection_thresholds_by_hand() -> None:
    from diff4mmlits.evaluate.tables import summarize

    rows = [{"case": name, **case_metrics(pred, truth, (1.0, 1.0, 1.0), iou_thresholds=(0.0, 0.5))}
            for name, (pred, truth) in THREE_WAYS.items()]
    first = rows[0]
    # L1 = [0,4) meets C1 = [2,6): Dice 2·2/(4+4) = 0.5, IoU 2/6; L2 = [10,12) missed: 0; C2 = [16,18) false positive
    assert first["tumor_dsc"] == pytest.approx(2 * 2 / (6 + 6))
    assert first["lesion_dice_sum"] == pytest.approx(0.5) and first["lesion_dice_mean"] == pytest.approx(0.25)
    assert (first["lesions_detected_iou0"], first["lesions_detected_iou50"]) == (1, 0)
    assert (first["lesions_tp_pred_iou0"], first["lesions_tp_pred_iou50"]) == (1, 0)
    assert (first["tumor_tp_voxels"], first["tumor_pred_voxels"], first["tumor_true_voxels"]) == (2, 6, 6)
    assert np.isnan(rows[1]["lesion_dice_mean"]) and rows[1]["tumor_dsc"] == 1.0
    assert rows[2]["lesions_detected_iou50"] == 1 and rows[3]["tumor_dsc"] == 0.0
    summary = {r["metric"]: r for r in summarize(rows)}
    assert summary["tumor_dsc"]["mean"] == pytest.approx((1 / 3 + 1 + 1 + 0) / 4)  # per case
    assert summary["tumor_dice_global"]["mean"] == pytest.approx(2 * 4 / (11 + 8))  # ΣTP 4, Σ|P| 11, Σ|T| 8
    assert summary["tumor_dice_per_lesion"]["mean"] == pytest.approx((0.5 + 0.0 + 1.0) / 3)
    assert summary["tumor_dice_per_lesion"]["n"] == 3
    assert summary["lesion_recall_iou0"]["mean"] == pytest.approx(2 / 3)
    assert summary["lesion_precision_iou0"]["mean"] == pytest.approx(2 / 4)  # 4 predicted components, 2 true
    assert summary["lesion_recall_iou50"]["mean"] == pytest.approx(1 / 3)
    assert summary["lesion_precision_iou50"]["mean"] == pytest.approx(1 / 4)
    assert summary["lesion_f1_iou50"]["mean"] == pytest.approx(2 * (1 / 3) * (1 / 4) / (1 / 3 + 1 / 4))


def test_summary_text_says_which_tumor_dice_is_which() -> None:
    from diff4mmlits.evaluate.tables import summarize, summary_text

    rows = [{"case": name, **case_metrics(pred, truth, (1.0, 1.0, 1.0))} for name, (pred, truth) in THREE_WAYS.items()]
    text = summary_text(summarize(rows))
    assert text.splitlines()[0].startswith("tumor Dice, three ways: tumor_dsc = per case")
    assert "tumor_dice_global" in text and "tumor_dice_per_lesion" in text and "lesion_recall_iou10" in text
