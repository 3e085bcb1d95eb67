"""Summary tables: mean ± sd over defined values, undefined ones counted; CSV round trip."""

from __future__ import annotations

import math

import pytest

from diff4mmlits.evaluate.tables import mean_sd_text, read_rows_csv, summarize, summary_text, write_rows_csv


def test_summary_skips_and_counts_undefined_values(tmp_path) -> None:
    rows = [
        {"case": "a", "tumor_dice_per_case": 0.5, "tumor_hd95_mm": 4.0, "lesions_true": 2},
        {"case": "b", "tumor_dice_per_case": 0.7, "tumor_hd95_mm": math.nan, "lesions_true": 1},
        {"case": "c", "tumor_dice_per_case": 0.9, "tumor_hd95_mm": 6.0, "lesions_true": 0},
    ]
    summary = {r["metric"]: r for r in summarize(rows, metrics=("tumor_dice_per_case", "tumor_hd95_mm"))}
    assert summary["tumor_dice_per_case"]["mean"] == pytest.approx(0.7) and summary["tumor_dice_per_case"]["sd"] == pytest.approx(0.2)
    assert summary["tumor_hd95_mm"]["mean"] == pytest.approx(5.0) and summary["tumor_hd95_mm"]["n_undefined"] == 1
    assert summary["lesions_true (total)"]["mean"] == 3
    assert mean_sd_text(summary["tumor_dice_per_case"], percent=True) == "70.00 ± 20.00"
    assert "(1 undefined)" in summary_text(list(summary.values()))
    write_rows_csv(rows, tmp_path / "m.csv")
    back = read_rows_csv(tmp_path / "m.csv")
    assert back[1]["case"] == "b" and math.isnan(back[1]["tumor_hd95_mm"]) and back[2]["tumor_dice_per_case"] == pytest.approx(0.9)


def test_an_older_metrics_csv_is_read_under_the_new_per_case_name(tmp_path) -> None:
    (tmp_path / "m.csv").write_text("case,tumor_dsc,liver_dsc\na,0.25,0.9\nb,0.75,0.8\n")
    rows = read_rows_csv(tmp_path / "m.csv")
    assert rows[0]["tumor_dice_per_case"] == pytest.approx(0.25) and "tumor_dsc" not in rows[0]
    summary = {r["metric"]: r for r in summarize(rows, metrics=("tumor_dsc", "liver_dsc"))}
    assert summary["tumor_dice_per_case"]["mean"] == pytest.approx(0.5) and summary["liver_dsc"]["mean"] == pytest.approx(0.85)
    assert "tumor_dice_global" not in summary  # the pooled numbers need columns an older file lacks
