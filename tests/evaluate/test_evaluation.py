"""``evaluate PRED GT --out DIR``: tables, figures and an index.html that links only files that exist."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from diff4mmlits.cli import main
from diff4mmlits.data.case import Case
from diff4mmlits.data.io import write_volume
from diff4mmlits.data.native import write_case_folder
from diff4mmlits.data.volume import Volume
from diff4mmlits.errors import InputError
from diff4mmlits.evaluate.config import EvaluateConfig
from diff4mmlits.evaluate.evaluation import evaluate_predictions, read_truth
from diff4mmlits.evaluate.tables import read_rows_csv

SPACING = (2.0, 1.0, 1.0)


def _truth(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    label = np.zeros((8, 16, 16), dtype=np.uint8)
    label[1:7, 2:14, 2:14] = 1
    z, y = rng.integers(2, 5), rng.integers(4, 9)
    label[z:z + 2, y:y + 4, 5:9] = 2
    return label


def _write_pair(tmp_path: Path, n: int = 4) -> tuple[Path, Path, Path]:
    """A dataset (images + labels), a folder of label files, and predictions of varying quality."""
    dataset, labels, preds = tmp_path / "dataset", tmp_path / "labels", tmp_path / "pred"
    for i in range(n):
        truth = _truth(i)
        pred = truth.copy()
        pred[pred == 2] = 1
        pred[truth == 2] = 2 if i else 1  # case 0: tumor missed entirely
        if i == 3:
            pred[7, 14:16, 14:16] = 2  # a false positive
        image = np.where(truth > 0, 100.0, -50.0).astype(np.float32)
        case = Case(f"case_{i}", {"PVP": Volume(image, SPACING)}, Volume(truth, SPACING, kind="label"))
        write_case_folder(case, dataset / case.case_id)
        write_volume(case.label, labels / f"{case.case_id}.nii.gz")
        write_volume(Volume(pred, SPACING, kind="label"), preds / f"{case.case_id}.nii.gz")
    return dataset, labels, preds


def _linked_files(page: Path) -> list[Path]:
    links = re.findall(r'(?:src|href)="([^"]+)"', page.read_text())
    return [page.parent / link for link in links]


@pytest.mark.parametrize("gt_kind", ["dataset", "labels"])
def test_evaluation_writes_tables_figures_and_a_report_linking_existing_files(tmp_path, gt_kind) -> None:
    dataset, labels, preds = _write_pair(tmp_path)
    gt = dataset if gt_kind == "dataset" else labels
    evaluation = evaluate_predictions(preds, read_truth(gt), tmp_path / "out", EvaluateConfig())
    rows = read_rows_csv(tmp_path / "out" / "metrics.csv")
    assert [r["case"] for r in rows] == ["case_0", "case_1", "case_2", "case_3"]
    assert rows[0]["tumor_dice_per_case"] == 0.0 and rows[1]["tumor_dice_per_case"] == 1.0
    assert rows[3]["lesions_false_positive"] == 1
    page = tmp_path / "out" / "index.html"
    linked = _linked_files(page)
    assert any(p.name == "boxplots.png" for p in linked) and sum("overlay_" in p.name for p in linked) == 3
    assert all(p.is_file() for p in linked), [p for p in linked if not p.is_file()]
    assert "DSC per case (%)" in page.read_text() and evaluation.summary


def test_predictions_must_lie_on_the_truth_grid(tmp_path) -> None:
    _, labels, preds = _write_pair(tmp_path, n=1)
    write_volume(Volume(np.zeros((8, 16, 16), np.uint8), (3.0, 1.0, 1.0), kind="label"), preds / "case_0.nii.gz")
    with pytest.raises(InputError, match="spacing"):
        evaluate_predictions(preds, read_truth(labels), tmp_path / "out", EvaluateConfig())


def test_evaluate_command(tmp_path, capsys) -> None:
    _, labels, preds = _write_pair(tmp_path, n=2)
    assert main(["evaluate", str(preds), str(labels), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "rep" / "index.html").is_file()
    for legend in ("tumor_dice_per_case: tumor Dice per case", "tumor_dice_global: tumor Dice global",
                   "tumor_dice_per_lesion: tumor Dice per lesion", "lesion_*_iou<t>: lesion detection"):
        assert legend in out and legend in (tmp_path / "rep" / "summary.txt").read_text()
    # lesions of 2·4·4 = 32 voxels; case_0 misses its one (Dice 0), case_1 finds it exactly (Dice 1):
    # per case (0 + 1) / 2, global 2·32 / ((0 + 32) + (32 + 32)), per lesion (0 + 1) / 2
    summary = {r["case"]: r for r in read_rows_csv(tmp_path / "rep" / "summary.csv")}
    three = ("tumor_dice_per_case", "tumor_dice_global", "tumor_dice_per_lesion")
    assert [summary[name]["mean"] for name in three] == pytest.approx([0.5, 2 * 32 / 96, 0.5])
    assert [summary[f"lesion_recall_iou{t}"]["mean"] for t in (0, 10, 50)] == pytest.approx([0.5, 0.5, 0.5])
    assert [summary[f"lesion_precision_iou{t}"]["mean"] for t in (0, 10, 50)] == pytest.approx([1.0, 1.0, 1.0])
    columns = (tmp_path / "rep" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"tumor_dice_per_case", "tumor_tp_voxels", "lesion_dice_sum", "lesions_detected_iou50"} <= set(columns)
    assert "tumor_dsc" not in columns
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "Tumor Dice, three ways" in page and all(name in page for name in three)
    assert "Lesion detection at IoU thresholds" in page
    assert main(["evaluate", str(tmp_path / "none"), str(labels), "--out", str(tmp_path / "x")]) == 2
    assert "prediction folder not found" in capsys.readouterr().err


def test_a_prediction_with_other_label_values_is_refused_before_anything_is_written(tmp_path) -> None:
    """A label file with value 7 was scored as if it were a prediction."""
    _, labels, preds = _write_pair(tmp_path, n=2)
    other = _truth(1)
    other[other == 2] = 7
    write_volume(Volume(other, SPACING, kind="label"), preds / "case_1.nii.gz")
    with pytest.raises(InputError, match="case_1.nii.gz: holds label value.s. 7; a prediction is 0 background"):
        evaluate_predictions(preds, read_truth(labels), tmp_path / "out", EvaluateConfig())
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError, match="is a file; give the folder of predictions"):
        evaluate_predictions(preds / "case_0.nii.gz", read_truth(labels), tmp_path / "out", EvaluateConfig())


def test_a_full_disk_during_the_figures_leaves_the_earlier_evaluation_whole(tmp_path, monkeypatch) -> None:
    """The tables were written before the figures: a full disk there left new tables beside the
    earlier evaluation's figures (and its stale overlays deleted)."""
    import errno

    from diff4mmlits.evaluate import metric_figures

    _, labels, preds = _write_pair(tmp_path, n=4)
    out = tmp_path / "report"
    evaluate_predictions(preds, read_truth(labels), out, EvaluateConfig())
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert len([p for p in before if p.name.startswith("overlay_")]) == 3
    write_volume(Volume(_truth(0), SPACING, kind="label"), preds / "case_0.nii.gz")  # case 0 now perfect

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(args[3]))

    monkeypatch.setattr(metric_figures, "plot_overlay", full_disk)
    with pytest.raises(OSError, match="No space left"):
        evaluate_predictions(preds, read_truth(labels), out, EvaluateConfig())
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]

    monkeypatch.undo()
    evaluate_predictions(preds, read_truth(labels), out, EvaluateConfig())
    rows = read_rows_csv(out / "metrics.csv")
    assert rows[0]["tumor_dice_per_case"] == 1.0
    overlays = sorted(p.name for p in (out / "figures").glob("overlay_*.png"))
    assert len(overlays) == 3 and not [p for p in out.iterdir() if p.name.startswith(".")]


def test_a_multi_organ_ground_truth_is_refused_not_scored(tmp_path) -> None:
    """A TotalSegmentator map as ground truth (liver 5, right kidney 2, ...) was scored: every organ as
    liver, the kidney as tumor."""
    _, labels, preds = _write_pair(tmp_path, n=2)
    organs = _truth(1)
    organs[organs == 1] = 5
    write_volume(Volume(organs, SPACING, kind="label"), labels / "case_1.nii.gz")
    with pytest.raises(InputError, match=r"case_1.nii.gz: holds label value\(s\) 5; the ground truth is 0 background, "
                                         r"1 liver, 2 tumor \(remap .* TotalSegmentator's liver 5 to 1\)"):
        evaluate_predictions(preds, read_truth(labels), tmp_path / "out", EvaluateConfig())
    assert not (tmp_path / "out").exists()


def test_ground_truth_cases_without_a_prediction_are_named(tmp_path, capsys) -> None:
    """The note said '1 ground-truth case(s) have no prediction' without saying which, and
    summary.txt left it out: a failed predict on the hardest case raised the means unseen."""
    _, labels, preds = _write_pair(tmp_path, n=3)
    (preds / "case_2.nii.gz").unlink()
    assert main(["evaluate", str(preds), str(labels), "--out", str(tmp_path / "rep")]) == 0
    expected = "not scored: 1 ground-truth case(s) have no prediction (case_2); the means above leave them out"
    assert expected in capsys.readouterr().out
    assert expected in (tmp_path / "rep" / "summary.txt").read_text()
