"""nnU-Net v2 raw datasets: import (channel names → phases, labels → ours) and export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from data_builders import Build

from diff4mmlits.cli import main
from diff4mmlits.data.case import Case
from diff4mmlits.data.dataset import detect_layout, load_dataset
from diff4mmlits.data.io import read_volume, write_volume
from diff4mmlits.data.native import write_case_folder
from diff4mmlits.data.nnunet import export_nnunet_dataset, read_nnunet_dataset
from diff4mmlits.data.validate import validate_dataset
from diff4mmlits.errors import InputError


def write_raw(root: Path, channel_names: dict, cases: dict[str, Case], labels: dict | None = None, test_cases: dict[str, Case] | None = None) -> Path:
    """An nnU-Net v2 raw dataset written by hand (the format nnU-Net documents)."""
    order = [channel_names[k] for k in sorted(channel_names, key=int)]
    meta = {"channel_names": channel_names, "labels": labels or {"background": 0, "liver": 1, "tumor": 2},
            "numTraining": len(cases), "file_ending": ".nii.gz"}
    root.mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps(meta))
    for split, table in (("Tr", cases), ("Ts", test_cases or {})):
        for case_id, case in table.items():
            for k, phase in enumerate(order):
                write_volume(case.phases[_ours(phase)], root / f"images{split}" / f"{case_id}_{k:04d}.nii.gz")
            if split == "Tr":
                write_volume(case.label, root / "labelsTr" / f"{case_id}.nii.gz")
    return root


def _ours(name: str) -> str:
    return {"arterial": "AP", "portal venous": "PVP", "CT": "PVP"}.get(name, name)


def test_import_maps_channel_aliases_to_phases(tmp_path: Path) -> None:
    build = Build()
    cases = {"liver_001": build.case(phases=("AP", "PVP")), "liver_002": build.case(phases=("AP", "PVP"))}
    root = write_raw(tmp_path / "Dataset501_Liver", {"0": "arterial", "1": "portal venous"}, cases,
                     test_cases={"liver_100": build.case(phases=("AP", "PVP"), labelled=False)})
    assert detect_layout(root) == "nnunet"
    read = read_nnunet_dataset(root)
    assert [c.case_id for c in read] == ["liver_001", "liver_002"]
    assert read[0].phase_names == ["AP", "PVP"]
    np.testing.assert_allclose(read[0].phases["AP"].array, cases["liver_001"].phases["AP"].array)
    np.testing.assert_array_equal(read[0].label.array, cases["liver_001"].label.array)
    with_test = load_dataset(root, require_label=False)
    assert [c.case_id for c in with_test] == ["liver_001", "liver_002", "liver_100"]
    assert with_test[-1].label is None
    assert validate_dataset(root).ok


def test_single_ct_channel_is_the_annotated_phase_and_labels_are_renumbered(tmp_path: Path) -> None:
    """MSD-style names: one channel "CT"; classes given as {"background": 0, "tumor": 1, "liver": 2}."""
    case = Build().case(phases=("PVP",))
    swapped = case.label.with_array(np.choose(case.label.array, [0, 2, 1]).astype(np.uint8))  # our 1↔2
    root = write_raw(tmp_path / "Dataset502_Swap", {"0": "CT"},
                     {"c1": Case("c1", case.phases, swapped)}, labels={"background": 0, "tumor": 1, "liver": 2})
    read = read_nnunet_dataset(root)[0]
    assert read.phase_names == ["PVP"]
    np.testing.assert_array_equal(read.label.array, case.label.array)
    assert validate_dataset(root).ok


@pytest.mark.parametrize(
    ("meta_change", "match"),
    [
        ({"channel_names": {"0": "T1", "1": "T2"}}, "are not CT phases"),
        ({"channel_names": {"0": "AP", "1": "arterial"}}, "two channels are phase AP"),
        ({"channel_names": {"0": "AP", "1": "DP"}}, "no channel is the annotated phase PVP"),
        ({"labels": {"background": 0, "liver": 1, "vessel": 2}}, "label 'vessel'"),
        ({"labels": {"background": 0, "liver": [1, 2]}}, "region-based"),
    ],
)
def test_bad_dataset_json_is_one_line(tmp_path: Path, meta_change: dict, match: str) -> None:
    root = write_raw(tmp_path / "Dataset503_X", {"0": "AP", "1": "PVP"}, {"c1": Build().case(phases=("AP", "PVP"))})
    meta = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**meta, **meta_change}))
    with pytest.raises(InputError, match=match) as err:
        read_nnunet_dataset(root)
    assert str(err.value).startswith(str(root / "dataset.json"))
    report = validate_dataset(root)
    assert len(report.errors) == 1 and match.split("'")[0] in report.errors[0].message


def test_missing_channel_file_and_broken_json(tmp_path: Path) -> None:
    root = write_raw(tmp_path / "Dataset504_X", {"0": "AP", "1": "PVP"}, {"c1": Build().case(phases=("AP", "PVP"))})
    (root / "imagesTr" / "c1_0000.nii.gz").unlink()
    report = validate_dataset(root)
    assert [p.message.split(":")[0] for p in report.errors] == ["missing"]
    assert report.errors[0].path == str(root / "imagesTr" / "c1_0000.nii.gz")
    (root / "dataset.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        read_nnunet_dataset(root)


def test_export_writes_a_valid_nnunet_v2_dataset_and_reads_back(tmp_path: Path) -> None:
    build = Build()
    full = build.case("case_full", phases=("NC", "AP", "PVP", "DP"))
    partial = build.case("case_pvp_only", phases=("PVP",))
    unlabelled = build.case("case_test", phases=("AP", "PVP"), labelled=False)
    target = export_nnunet_dataset([full, partial, unlabelled], tmp_path / "nnUNet_raw", dataset_id=7, name="Hybrid")
    assert target == tmp_path / "nnUNet_raw" / "Dataset007_Hybrid"
    assert sorted(p.name for p in (tmp_path / "nnUNet_raw").iterdir()) == ["Dataset007_Hybrid"]  # no staging left

    meta = json.loads((target / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT", "1": "CT", "2": "CT", "3": "CT"}
    assert meta["channel_phases"] == {"0": "NC", "1": "AP", "2": "PVP", "3": "DP"}
    assert meta["labels"] == {"background": 0, "liver": 1, "tumor": 2}
    assert meta["numTraining"] == 2 and meta["file_ending"] == ".nii.gz"
    assert meta["filled_phases"] == {"case_pvp_only": {"NC": "PVP", "AP": "PVP", "DP": "PVP"},
                                     "case_test": {"NC": "PVP", "DP": "PVP"}}
    # nnU-Net's rules: every training case has every channel and a label on the same grid
    train_ids = sorted(p.name[: -len(".nii.gz")] for p in (target / "labelsTr").iterdir())
    assert train_ids == ["case_full", "case_pvp_only"]
    for case_id in train_ids:
        label = read_volume(target / "labelsTr" / f"{case_id}.nii.gz", kind="label")
        assert set(np.unique(label.array)) <= {0, 1, 2}
        for k in range(4):
            assert read_volume(target / "imagesTr" / f"{case_id}_{k:04d}.nii.gz").same_grid(label)
    assert sorted(p.name for p in (target / "imagesTs").iterdir()) == [f"case_test_{k:04d}.nii.gz" for k in range(4)]

    back = {c.case_id: c for c in load_dataset(target, require_label=False)}
    assert back["case_full"].phase_names == ["NC", "AP", "PVP", "DP"]
    for phase in ("NC", "AP", "PVP", "DP"):
        np.testing.assert_allclose(back["case_full"].phases[phase].array, full.phases[phase].array)
    np.testing.assert_array_equal(back["case_full"].label.array, full.label.array)
    np.testing.assert_allclose(back["case_pvp_only"].phases["AP"].array, partial.phases["PVP"].array)  # filled copy
    assert back["case_test"].label is None


def test_export_with_phase_channel_names(tmp_path: Path) -> None:
    target = export_nnunet_dataset([Build().case(phases=("AP", "PVP"))], tmp_path, 501, "Named", channel_names="phases")
    meta = json.loads((target / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "AP", "1": "PVP"}
    assert [c.phase_names for c in read_nnunet_dataset(target)] == [["AP", "PVP"]]


def test_export_refuses_unregistered_cases_and_leaves_nothing(tmp_path: Path) -> None:
    build = Build()
    pvp = build.ct()
    case = Case("c1", {"PVP": pvp, "AP": build.ct(origin=(12.0, 0.0, 0.0))}, build.label(pvp))
    with pytest.raises(InputError, match="c1/AP vs PVP: origin .*export registered cases"):
        export_nnunet_dataset([case], tmp_path / "raw", 500, "X")
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").iterdir())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dataset_id": 0}, "dataset ids are 1 to 999"),
        ({"dataset_id": 1000}, "dataset ids are 1 to 999"),
        ({"name": "my data"}, "letters, digits"),
        ({"channel_names": "zscore"}, "choose ct or phases"),
    ],
)
def test_export_argument_errors(tmp_path: Path, kwargs: dict, match: str) -> None:
    values = {"dataset_id": 500, "name": "X", **kwargs}
    with pytest.raises(InputError, match=match):
        export_nnunet_dataset([Build().case()], tmp_path, **values)


def test_export_does_not_overwrite_without_asking(tmp_path: Path) -> None:
    build = Build()
    first = export_nnunet_dataset([build.case("a")], tmp_path, 500, "X")
    with pytest.raises(InputError, match="already exists"):
        export_nnunet_dataset([build.case("b")], tmp_path, 500, "X")
    with pytest.raises(InputError, match="already used by Dataset500_X"):
        export_nnunet_dataset([build.case("b")], tmp_path, 500, "Y")
    export_nnunet_dataset([build.case("b")], tmp_path, 500, "X", overwrite=True)
    assert sorted(p.name for p in (first / "labelsTr").iterdir()) == ["b.nii.gz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset500_X"]


def test_interrupted_export_leaves_no_partial_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import diff4mmlits.data.nnunet as nnunet

    calls = {"n": 0}
    real_write = nnunet.write_volume

    def fail_on_third(volume, path):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real_write(volume, path)

    monkeypatch.setattr(nnunet, "write_volume", fail_on_third)
    with pytest.raises(OSError, match="disk full"):
        export_nnunet_dataset([Build().case()], tmp_path, 500, "X")
    assert list(tmp_path.iterdir()) == []


def test_cli_exports_several_sources_together(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """E.g. RUN/registered + RUN/synthetic → one nnU-Net dataset."""
    build = Build()
    real, synthetic = tmp_path / "registered", tmp_path / "synthetic"
    write_case_folder(build.case("case_000"), real / "case_000")
    write_case_folder(build.case("case_000_syn0"), synthetic / "case_000_syn0")
    (synthetic / "case_000_syn0" / "provenance.json").write_text("{}")
    code = main(["export-nnunet", str(real), str(synthetic), str(tmp_path / "raw"), "--dataset-id", "511", "--name", "Hybrid"])
    out = capsys.readouterr().out
    assert code == 0
    target = tmp_path / "raw" / "Dataset511_Hybrid"
    assert f"written to {target}" in out
    assert sorted(p.name for p in (target / "labelsTr").iterdir()) == ["case_000.nii.gz", "case_000_syn0.nii.gz"]


def test_cli_export_refuses_a_bad_source_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = Build().dataset(tmp_path / "ds", n_cases=1, phases=("PVP",))
    (source / "case_000" / "PVP.nii.gz").write_text("broken")
    code = main(["export-nnunet", str(source), str(tmp_path / "raw"), "--dataset-id", "500"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [line for line in err if line.startswith("error: ")] and len(err) == 1
    assert str(source / "case_000" / "PVP.nii.gz") in err[0]
    assert not (tmp_path / "raw").exists()


def test_cli_export_refuses_an_out_inside_a_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """OUT inside a source's case folder was written (exit 0), and the source then failed validate and
    training ('unknown phase name Dataset513_Diff4MMLiTS')."""
    source = Build().dataset(tmp_path / "ds", n_cases=1, phases=("PVP",))
    before = sorted(p.name for p in (source / "case_000").iterdir())
    code = main(["export-nnunet", str(source), str(source / "case_000"), "--dataset-id", "513"])
    assert code == 2 and "OUT is inside the SOURCE: the nnU-Net dataset would" in capsys.readouterr().err
    assert sorted(p.name for p in (source / "case_000").iterdir()) == before


def test_patient_splits_keep_each_patients_synthetic_copies_out_of_its_validation_fold() -> None:
    from diff4mmlits.data.nnunet import make_patient_splits

    real = [f"p{i}" for i in range(7)]
    synthetic = {f"p{i}_s{k}": f"p{i}" for i in range(7) for k in range(2)}
    patient_of = {**{c: c for c in real}, **synthetic}
    splits = make_patient_splits(real + list(synthetic), patient_of, set(synthetic), folds=5, seed=0)
    assert len(splits) == 5
    assert sorted(c for fold in splits for c in fold["val"]) == real  # every real case validated exactly once
    for fold in splits:
        held_out = {patient_of[c] for c in fold["val"]}
        assert not set(fold["val"]) & set(synthetic)  # synthetic cases are never validated
        assert not {patient_of[c] for c in fold["train"]} & held_out  # nor trained on beside their patient's validation
        assert set(fold["train"]) | set(fold["val"]) >= set(real)
        assert {c for c in synthetic if patient_of[c] not in held_out} <= set(fold["train"])


def test_export_puts_the_test_split_in_imagesTs_and_writes_the_splits(tmp_path: Path) -> None:
    build = Build()
    cases = [build.case(f"case_{i}", phases=("AP", "PVP")) for i in range(4)]
    painted = Case("case_0_s000", cases[0].phases, cases[0].label)
    target = export_nnunet_dataset(cases + [painted], tmp_path / "raw", dataset_id=9, name="Runs",
                                   patients={"case_0_s000": "case_0"}, synthetic=["case_0_s000"], test=["case_3"], folds=3)
    meta = json.loads((target / "dataset.json").read_text())
    assert meta["numTraining"] == 4 == len(list((target / "labelsTr").iterdir()))
    assert meta["synthetic_cases"] == ["case_0_s000"]
    assert sorted(p.name for p in (target / "labelsTs").iterdir()) == ["case_3.nii.gz"]
    assert {p.name.rsplit("_", 1)[0] for p in (target / "imagesTs").iterdir()} == {"case_3"}
    splits = json.loads((target / "splits_final.json").read_text())
    assert sorted(c for fold in splits for c in fold["val"]) == ["case_0", "case_1", "case_2"]
    fold_of_case_0 = next(fold for fold in splits if "case_0" in fold["val"])
    assert "case_0_s000" not in fold_of_case_0["train"]


def test_export_refuses_synthetic_cases_painted_into_test_cases(tmp_path: Path) -> None:
    build = Build()
    cases = [build.case(f"case_{i}", phases=("PVP",)) for i in range(3)]
    painted = Case("case_2_s000", cases[2].phases, cases[2].label)
    with pytest.raises(InputError, match="painted into test cases"):
        export_nnunet_dataset(cases + [painted], tmp_path / "raw", dataset_id=9, name="Leak",
                              patients={"case_2_s000": "case_2"}, synthetic=["case_2_s000"], test=["case_2"])


def test_nnunet_itself_accepts_a_run_export_with_test_split_and_splits(tmp_path: Path) -> None:
    """nnU-Net v2's own integrity check (optional: skipped where nnunetv2 is not installed; install it
    with ``pip install nnunetv2 -c <(echo torch==2.13.0)``)."""
    pytest.importorskip("nnunetv2")
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    build = Build()
    cases = [build.case(f"case_{i}", phases=("NC", "AP", "PVP", "DP")) for i in range(4)]
    painted = Case("case_0_s000", cases[0].phases, cases[0].label)
    target = export_nnunet_dataset(cases + [painted], tmp_path / "raw", dataset_id=502, name="Check",
                                   patients={"case_0_s000": "case_0"}, synthetic=["case_0_s000"], test=["case_3"], folds=3)
    verify_dataset_integrity(str(target), num_processes=1)  # raises on any problem


def test_more_folds_than_patients_says_how_many_were_written(caplog) -> None:
    from diff4mmlits.data.nnunet import make_patient_splits

    real = [f"p{i}" for i in range(5)]
    with caplog.at_level("WARNING"):
        splits = make_patient_splits(real, {c: c for c in real}, set(), folds=100, seed=0)
    assert len(splits) == 5 and "100 folds asked for, 5 written (one per real training patient)" in caplog.text
