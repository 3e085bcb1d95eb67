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
    assert row["liver_dsc"] == 1.0 and row["tumor_dice_per_case"] == 0.0 and row["tumor_sensitivity"] == 0.0
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
    assert first["tumor_dice_per_case"] == pytest.approx(2 * 2 / (6 + 6))
    assert first["lesion_dice_sum"] == pytest.approx(0.5) and first["lesion_dice_mean"] == pytest.approx(0.25)
    assert (first["lesions_detected_iou0"], first["lesions_detected_iou50"]) == (1, 0)
    assert (first["lesions_tp_pred_iou0"], first["lesions_tp_pred_iou50"]) == (1, 0)
    assert (first["tumor_tp_voxels"], first["tumor_pred_voxels"], first["tumor_true_voxels"]) == (2, 6, 6)
    assert np.isnan(rows[1]["lesion_dice_mean"]) and rows[1]["tumor_dice_per_case"] == 1.0
    assert rows[2]["lesions_detected_iou50"] == 1 and rows[3]["tumor_dice_per_case"] == 0.0
    summary = {r["metric"]: r for r in summarize(rows)}
    assert summary["tumor_dice_per_case"]["mean"] == pytest.approx((1 / 3 + 1 + 1 + 0) / 4)  # per case
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
    lines = summary_text(summarize(rows)).splitlines()
    assert lines[0].startswith("tumor_dice_per_case: tumor Dice per case (each case's Dice, mean over cases")
    assert lines[1].startswith("tumor_dice_global: tumor Dice global (all cases' voxels pooled")
    assert lines[2].startswith("tumor_dice_per_lesion: tumor Dice per lesion (each true lesion")
    values = {line.split()[0]: line.split()[1] for line in lines[5:] if line.strip()}
    assert values["tumor_dice_per_case"] == "58.33"  # (1/3 + 1 + 1 + 0) / 4, ± sd follows
    assert values["tumor_dice_global"] == "42.11" and values["tumor_dice_per_lesion"] == "50.00"
    assert values["lesion_recall_iou10"] == "66.67"  # [0,4) vs [2,6): IoU 1/3 > 0.1; [0,2) exact; [10,12) missed
    names = [line.split()[0] for line in lines[5:] if line.strip()]
    assert names[:3] == ["tumor_dice_per_case", "tumor_dice_global", "tumor_dice_per_lesion"]  # side by side


# Lesions of different sizes on one line of 30 voxels (26-connectivity on a line = contiguous runs).
#   truth: A [0,8) 8 vox, B [10,13) 3 vox, C [20,21) 1 vox, D [24,26) 2 vox, E [27,29) 2 vox
#   pred:  C1 [0,6) 6 vox, C2 [12,16) 4 vox, C3 [25,28) 3 vox (touches D and E)
SIZES_CASE = (_line(30, (0, 6), (12, 16), (25, 28)), _line(30, (0, 8), (10, 13), (20, 21), (24, 26), (27, 29)))
SET = {  # case: (prediction, truth)
    "sizes": SIZES_CASE,
    "missed": (_line(30), _line(30, (3, 7))),
    "empty": (_line(30), _line(30)),
    "false_positive_only": (_line(30, (5, 8)), _line(30)),
}


def test_three_dice_variants_over_lesions_of_different_sizes_by_hand() -> None:
    from diff4mmlits.data.measures import dice
    from diff4mmlits.evaluate.metrics import lesion_overlap
    from diff4mmlits.evaluate.tables import summarize

    pred, truth = (x == 2 for x in SIZES_CASE)
    overlaps = lesion_overlap(pred, truth, (0.0, 0.1, 0.5))
    # A: |A∩C1| 6 → 2·6/(8+6); B: |B∩C2| 1 → 2/(3+4); C missed → 0; D, E: each vs all of C3 → 2·1/(2+3)
    assert overlaps.lesion_dice == pytest.approx((12 / 14, 2 / 7, 0.0, 0.4, 0.4))
    c3, d_only = _line(30, (25, 28)) == 2, _line(30, (24, 26)) == 2
    assert overlaps.lesion_dice[3] == pytest.approx(dice(c3, d_only))  # the one Dice rule, on masks
    # IoU of the lesions: A 6/8, B 1/6, C 0, D 1/4, E 1/4; of the components: C1 6/8, C2 1/6, C3 2/5 (vs D ∪ E)
    assert overlaps.detected == {0.0: 4, 0.1: 4, 0.5: 1}
    assert overlaps.true_positive_predictions == {0.0: 3, 0.1: 3, 0.5: 1}

    rows = [{"case": name, **case_metrics(p, t, (1.0, 1.0, 1.0), iou_thresholds=(0.0, 0.1, 0.5))}
            for name, (p, t) in SET.items()]
    by_case = {r["case"]: r for r in rows}
    sizes = by_case["sizes"]
    assert sizes["tumor_dice_per_case"] == pytest.approx(2 * 9 / (13 + 16))  # TP 6+1+1+1, |P| 13, |T| 16
    assert (sizes["lesions_true"], sizes["lesions_pred"], sizes["lesions_detected"], sizes["lesions_false_positive"]) == (5, 3, 4, 0)
    assert sizes["lesion_dice_sum"] == pytest.approx(12 / 14 + 2 / 7 + 0.8)
    assert [sizes[f"lesions_detected_iou{t}"] for t in (0, 10, 50)] == [4, 4, 1]
    assert by_case["missed"]["tumor_dice_per_case"] == 0.0 and by_case["missed"]["lesion_dice_sum"] == 0.0
    assert by_case["missed"]["lesions_detected_iou0"] == 0 and by_case["missed"]["lesions_missed"] == 1
    assert by_case["empty"]["tumor_dice_per_case"] == 1.0 and by_case["empty"]["lesions_true"] == 0
    assert math.isnan(by_case["empty"]["lesion_dice_mean"])
    fp = by_case["false_positive_only"]
    assert fp["tumor_dice_per_case"] == 0.0 and fp["lesions_pred"] == 1 and fp["lesions_tp_pred_iou0"] == 0

    summary = {r["metric"]: r for r in summarize(rows)}
    assert summary["tumor_dice_per_case"]["mean"] == pytest.approx((18 / 29 + 0 + 1 + 0) / 4)
    assert summary["tumor_dice_global"]["mean"] == pytest.approx(2 * 9 / ((13 + 3) + (16 + 4)))  # = 0.5
    assert summary["tumor_dice_per_lesion"]["mean"] == pytest.approx((12 / 14 + 2 / 7 + 0.8 + 0) / 6)
    assert summary["tumor_dice_per_lesion"]["n"] == 6
    recall = {0: 4 / 6, 10: 4 / 6, 50: 1 / 6}
    precision = {0: 3 / 4, 10: 3 / 4, 50: 1 / 4}  # 4 predicted components (3 + the false positive)
    for t in (0, 10, 50):
        assert summary[f"lesion_recall_iou{t}"]["mean"] == pytest.approx(recall[t])
        assert summary[f"lesion_precision_iou{t}"]["mean"] == pytest.approx(precision[t])
        f1 = 2 * recall[t] * precision[t] / (recall[t] + precision[t])
        assert summary[f"lesion_f1_iou{t}"]["mean"] == pytest.approx(f1)
    assert summary["lesion_f1_iou0"]["mean"] == pytest.approx(12 / 17)


def test_detection_thresholds_follow_the_config() -> None:
    from diff4mmlits.evaluate.config import EvaluateConfig

    assert EvaluateConfig().lesion_iou_thresholds == (0.0, 0.1, 0.5)
    row = case_metrics(*SIZES_CASE, (1.0, 1.0, 1.0), iou_thresholds=(0.2, 0.75))
    # lesion IoUs 0.75, 1/6, 0, 0.25, 0.25: above 0.2 three, above 0.75 none (strictly above)
    assert (row["lesions_detected_iou20"], row["lesions_detected_iou75"]) == (3, 0)
    assert "lesions_detected_iou50" not in row
