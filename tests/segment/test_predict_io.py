"""predict as a TotalSegmentator user expects: an image file, a DICOM series, any subset of phases;
a single output file; statistics that match hand-computed volumes; device names checked."""

from __future__ import annotations

import json

import numpy as np
import pytest
from data_builders import Build

from diff4mmlits.cli import main
from diff4mmlits.config import resolve_config
from diff4mmlits.data.io import read_volume, write_volume
from diff4mmlits.data.native import write_case_folder
from diff4mmlits.data.volume import Volume
from diff4mmlits.distributed import resolve_device
from diff4mmlits.errors import InputError
from diff4mmlits.segment.predict_io import label_paths, label_statistics, read_prediction_inputs, reference_phase
from diff4mmlits.segment.train import train_model


@pytest.fixture
def model(tiny_case, tmp_path):
    config = resolve_config("smoke")
    segment = config.segment.model_copy(update={"epochs": 1, "steps_per_epoch": 2})
    train_model([tiny_case(f"c{i}", seed=i) for i in range(2)], [], segment, tmp_path / "model", seed=0,
                echo=lambda _: None, extra_config={"run_config": config.model_dump(mode="json")})
    return tmp_path / "model"


def test_a_single_image_file_gives_a_single_label_file(model, tiny_case, tmp_path, capsys) -> None:
    case = tiny_case("scan", seed=4)
    write_volume(case.phases["PVP"], tmp_path / "scan.nii.gz")
    out = tmp_path / "labels" / "scan_label.nii.gz"
    assert main(["predict", str(tmp_path / "scan.nii.gz"), str(out), "--model", str(model), "--device", "cpu",
                 "--statistics"]) == 0
    assert out.is_file() and read_volume(out, kind="label").same_grid(case.phases["PVP"])
    said = capsys.readouterr().out  # the statistics' own files, not the label file ("statistics in .../scan_label.nii.gz")
    stats = tmp_path / "labels" / "scan_label.statistics.json"
    assert f"labels in {out}; statistics in {stats} and {tmp_path / 'labels' / 'statistics.csv'}" in said and stats.is_file()


def test_a_dicom_series_folder_is_one_case_on_its_own_grid(model, tmp_path) -> None:
    array = np.full((6, 16, 16), -50, np.int16)
    array[2:4, 4:12, 4:12] = 60
    Build.dicom_series(tmp_path / "series", array, spacing=(2.5, 1.5, 1.5), origin=(-30.0, 10.0, -5.0))
    cases = read_prediction_inputs(tmp_path / "series", "PVP")
    assert [c.case_id for c in cases] == ["series"] and list(cases[0].phases) == ["PVP"]
    assert main(["predict", str(tmp_path / "series"), str(tmp_path / "out.nii.gz"), "--model", str(model)]) == 0
    label = read_volume(tmp_path / "out.nii.gz", kind="label")
    assert label.shape == (6, 16, 16) and np.allclose(label.spacing_mm, (2.5, 1.5, 1.5))


def test_a_case_without_the_annotated_phase_uses_the_nearest_phase(model, tiny_case, tmp_path, caplog) -> None:
    case = tiny_case("ap_dp", seed=2)
    folder = tmp_path / "ap_dp"
    write_case_folder(case, folder)
    for name in ("PVP", "NC"):
        (folder / f"{name}.nii.gz").unlink()
    label = case.label.with_array(np.where(case.label.array > 0, 7, 0).astype(np.uint8))  # a value predict never uses
    write_volume(label, folder / "label.nii.gz")
    [read] = read_prediction_inputs(folder, "PVP")
    assert read.annotated_phase == "AP" and read.label is None
    assert "no PVP image; the labels go on the AP grid" in caplog.text
    assert main(["predict", str(folder), str(tmp_path / "out"), "--model", str(model)]) == 0
    assert read_volume(tmp_path / "out" / "ap_dp.nii.gz", kind="label").same_grid(case.phases["AP"])


def test_reference_phase_is_nearest_in_contrast_timing() -> None:
    assert reference_phase(["AP", "DP"], "PVP") == "AP"
    assert reference_phase(["NC", "DP"], "PVP") == "NC"
    assert reference_phase(["DP"], "PVP") == "DP" and reference_phase(["PVP", "AP"], "PVP") == "PVP"


def test_one_output_file_for_several_cases_is_refused(tmp_path) -> None:
    with pytest.raises(InputError, match="the output is one file but the input holds 2 cases"):
        label_paths(["a", "b"], tmp_path / "x.nii.gz")
    assert label_paths(["a", "b"], tmp_path / "out") == {"a": tmp_path / "out" / "a.nii.gz", "b": tmp_path / "out" / "b.nii.gz"}


def test_statistics_match_hand_computed_volumes() -> None:
    spacing = (2.0, 1.0, 0.5)  # one voxel = 1 mm³
    array = np.zeros((10, 20, 20), np.uint8)
    array[1:9, 2:18, 2:18] = 1  # liver with tumors: 8·16·16 = 2048 voxels
    array[2:4, 3:6, 3:6] = 2  # lesion of 18 voxels
    array[5:8, 10:14, 10:14] = 2  # lesion of 48 voxels
    label = Volume(array, spacing, origin_mm=(100.0, 0.0, 0.0), kind="label")
    pvp = Volume(np.where(array == 2, 40.0, 100.0).astype(np.float32), spacing, origin_mm=(100.0, 0.0, 0.0))
    stats = label_statistics(label, {"PVP": pvp})
    assert stats["liver_volume_ml"] == pytest.approx(2.048) and stats["tumor_volume_ml"] == pytest.approx(0.066)
    assert stats["lesions"] == 2 and [r["volume_ml"] for r in stats["lesion_list"]] == [0.048, 0.018]
    assert stats["lesion_list"][0]["mean_hu"] == {"PVP": 40.0} and stats["liver_mean_hu"] == {"PVP": 100.0}
    assert stats["lesion_list"][0]["centre_mm_xyz"] == [5.75, 11.5, 112.0]  # x, y, z of the voxel centroid
    assert stats["tumor_burden_percent"] == pytest.approx(100 * 66 / 2048, abs=0.01)


def test_predict_writes_statistics_beside_the_labels(model, tiny_case, tmp_path) -> None:
    folder = tmp_path / "data" / "one"
    write_case_folder(tiny_case("one", seed=3), folder)
    assert main(["predict", str(folder), str(tmp_path / "out"), "--model", str(model), "--statistics"]) == 0
    stats = json.loads((tmp_path / "out" / "one.statistics.json").read_text())
    label = read_volume(tmp_path / "out" / "one.nii.gz", kind="label")
    assert stats["case"] == "one" and stats["lesions"] == len(stats["lesion_list"])
    assert stats["liver_volume_ml"] == pytest.approx((label.array >= 1).sum() * np.prod(label.spacing_mm) / 1000, abs=0.01)
    rows = (tmp_path / "out" / "statistics.csv").read_text().splitlines()
    assert rows[0].startswith("case,liver_volume_ml,tumor_volume_ml,lesion") and len(rows) == 1 + max(1, stats["lesions"])


@pytest.mark.parametrize(("name", "words"), [("mps", "Metal GPU is not available"), ("tpu", "unknown device"),
                                             ("cuda:7", "CUDA")])
def test_device_names_are_checked_with_one_line(name: str, words: str) -> None:
    with pytest.raises(InputError, match=words):
        resolve_device(name)


def test_a_case_unlike_the_training_data_is_named_with_the_reason() -> None:
    from diff4mmlits.segment.predict_io import out_of_domain

    array = np.zeros((10, 20, 20), np.uint8)
    array[1:9, 2:18, 2:18] = 1
    label = Volume(array, (10.0, 10.0, 10.0), kind="label")  # 2048 mL
    pvp = Volume(np.full(array.shape, 100.0, np.float32), (10.0, 10.0, 10.0))
    training = {"volume_ml": [800.0, 1900.0], "median_hu": {"PVP": [90.0, 130.0]}}
    assert out_of_domain(label, {"PVP": pvp}, training) == []
    small = Volume(array, (5.0, 5.0, 5.0), kind="label")  # 256 mL
    dark = Volume(np.full(array.shape, -20.0, np.float32), (5.0, 5.0, 5.0))
    reasons = out_of_domain(small, {"PVP": dark}, training)
    assert reasons == ["liver 256 mL where the training livers were 800–1900 mL",
                       "PVP liver median -20 HU where training had 90–130 HU"]
    assert out_of_domain(label.with_array(np.zeros_like(array)), {}, training) == ["no liver found"]
    assert out_of_domain(label, {}, {}) == []


def test_the_model_records_its_training_livers(model) -> None:
    config = json.loads((model / "config.json").read_text())
    low, high = config["training_livers"]["volume_ml"]
    assert 0 < low <= high and set(config["training_livers"]["median_hu"]) == {"NC", "AP", "PVP", "DP"}


def test_save_registered_keeps_phases_transforms_and_qc(model, tmp_path) -> None:
    from builders import Anatomy, liver_case

    case = liver_case("moved", 4, shape=(16, 24, 24), spacing=(2.0, 1.5, 1.5), phases=("AP", "PVP"),
                      anatomy=Anatomy(liver_centre=(0.5, 0.5, 0.5), liver_radii=(0.3, 0.3, 0.3), tumor_radius_vox=(2.0, 3.0)))
    shifted = case.phases["AP"]
    moved = Volume(shifted.array, shifted.spacing_mm, tuple(o + d for o, d in zip(shifted.origin_mm, (2.0, 3.0, -1.5))))
    folder = tmp_path / "in" / "moved"
    write_case_folder(type(case)("moved", {"AP": moved, "PVP": case.phases["PVP"]}, case.label), folder)
    assert main(["predict", str(folder), str(tmp_path / "out"), "--model", str(model), "--save-registered"]) == 0
    kept = tmp_path / "out" / "moved_registered"
    assert {"AP.nii.gz", "PVP.nii.gz", "AP.tfm", "qc.json", "qc.png"} <= {p.name for p in kept.iterdir()}
    assert read_volume(kept / "AP.nii.gz").same_grid(case.phases["PVP"])


def test_dicom_seg_output_references_the_input_series(model, tmp_path) -> None:
    """Read back with highdicom: two segments, every frame on a source slice, the label's voxels.
    (Optional: skipped where highdicom is not installed.)"""
    highdicom = pytest.importorskip("highdicom")
    import pydicom
    from pydicom.uid import generate_uid

    array = np.full((6, 16, 16), -50, np.int16)
    array[1:5, 3:13, 3:13] = 60
    files = Build.dicom_series(tmp_path / "series", array, spacing=(2.5, 1.5, 1.5), origin=(-30.0, 10.0, -5.0))
    frame_of_reference = generate_uid()
    for path in files:  # what every scanner writes and the builder leaves out
        ds = pydicom.dcmread(path)
        ds.FrameOfReferenceUID, ds.SliceThickness = frame_of_reference, "2.5"
        ds.save_as(path)
    assert main(["predict", str(tmp_path / "series"), str(tmp_path / "seg.dcm"), "--model", str(model),
                 "--output-type", "dicom-seg", "--statistics"]) == 0
    assert (tmp_path / "seg.statistics.json").is_file()  # the same extras as a NIfTI output
    seg = highdicom.seg.segread(tmp_path / "seg.dcm")
    assert seg.number_of_segments == 2 and seg.FrameOfReferenceUID == frame_of_reference
    from diff4mmlits.segment.dicom_seg import series_files

    order = [pydicom.dcmread(f).SOPInstanceUID for f in series_files(tmp_path / "series")]
    frames = seg.get_pixels_by_source_instance(source_sop_instance_uids=order, segment_numbers=[1, 2])
    assert main(["predict", str(tmp_path / "series"), str(tmp_path / "label.nii.gz"), "--model", str(model)]) == 0
    label = read_volume(tmp_path / "label.nii.gz", kind="label").array  # the same prediction as NIfTI
    assert frames.shape == (6, 16, 16, 2)
    np.testing.assert_array_equal(frames[..., 0], label == 1)
    np.testing.assert_array_equal(frames[..., 1], label == 2)


def test_dicom_seg_needs_a_dicom_series(model, tiny_case, tmp_path) -> None:
    write_volume(tiny_case("x", seed=1).phases["PVP"], tmp_path / "x.nii.gz")
    with pytest.raises(InputError, match="dicom-seg: the input must be a DICOM series folder"):
        from diff4mmlits.segment.stage import predict_path

        predict_path(model, tmp_path / "x.nii.gz", tmp_path / "out", output_type="dicom-seg")


def test_a_study_missing_phases_is_flagged_only_for_a_model_trained_without_phase_dropout() -> None:
    from diff4mmlits.segment.predict_io import missing_phases_note

    phases = ("NC", "AP", "PVP", "DP")
    note = missing_phases_note(["PVP"], phases, 0.0)
    assert note is not None and note.startswith("NC, AP, DP missing") and "phase_dropout_prob" in note
    assert missing_phases_note(["PVP"], phases, 0.25) is None  # it saw such studies in training
    assert missing_phases_note(list(phases), phases, 0.0) is None  # nothing missing
    assert missing_phases_note(["PVP"], ("PVP",), 0.0) is None  # a PVP-only model needs nothing else


def test_a_real_unregistered_three_phase_study_gives_a_label_on_its_portal_venous_grid(tmp_path) -> None:
    """Real geometry none of our builders make: the HCC patient's NC (10 mm slices), AP and PVP, each on
    its own grid, no delayed phase (../shared/data/real; skipped where absent). The model is a toy
    at 6 × 4 × 4 mm (few sliding windows over the 256 × 256 × 33 study); what is checked is the
    path from real files to a label that lies on the PVP scan's grid."""
    from builders import Contrast, liver_case
    from conftest import REAL_DATA

    folder = REAL_DATA / "melihkurtaran__medical_image_processing" / "derived"
    files = {"NC": "HCC_007_19971227_PRE_LIVER_noncontrast.nii.gz", "AP": "HCC_007_19971227_LIVER_3_PHASE_acq2_arterial.nii.gz",
             "PVP": "HCC_007_19971227_LIVER_3_PHASE_acq3_portalvenous.nii.gz"}
    if not all((folder / name).is_file() for name in files.values()):
        pytest.skip(f"real CT not here ({folder})")
    contrast = Contrast(liver={"NC": 55.0, "AP": 70.0, "PVP": 110.0}, tumor={"NC": 40.0, "AP": 90.0, "PVP": 80.0})
    config = resolve_config("smoke")
    segment = config.segment.model_copy(update={"epochs": 1, "steps_per_epoch": 2})
    train_model([liver_case(f"c{i}", seed=i, shape=(12, 16, 16), spacing=(6.0, 4.0, 4.0), phases=("NC", "AP", "PVP"),
                            contrast=contrast) for i in range(2)],
                [], segment, tmp_path / "model", seed=0, echo=lambda _: None,
                extra_config={"run_config": config.model_dump(mode="json")})
    case = tmp_path / "HCC_007"
    case.mkdir()
    for phase, name in files.items():
        (case / f"{phase}.nii.gz").symlink_to(folder / name)
    assert main(["predict", str(case), str(tmp_path / "out.nii.gz"), "--model", str(tmp_path / "model"), "--statistics"]) == 0
    label, pvp = read_volume(tmp_path / "out.nii.gz", kind="label"), read_volume(case / "PVP.nii.gz")
    assert label.same_grid(pvp) and set(np.unique(label.array)) <= {0, 1, 2}
    stats = json.loads((tmp_path / "out.statistics.json").read_text())
    assert stats and (tmp_path / "statistics.csv").is_file()


def test_phases_the_model_never_trained_on_are_left_out_not_a_crash(tmp_path, capsys) -> None:
    """A model trained on AP and PVP studies given a four-phase study stopped with an internal error
    (its stage one normalises with the training data's intensity statistics, which have no NC or DP)."""
    from builders import liver_case, tiny_case

    config = resolve_config("smoke")
    segment = config.segment.model_copy(update={"epochs": 1, "steps_per_epoch": 2})
    model = tmp_path / "model"
    train_model([tiny_case(f"c{i}", seed=i) for i in range(2)], [], segment, model, seed=0, echo=lambda _: None,
                extra_config={"run_config": config.model_dump(mode="json")})
    assert set(json.loads((model / "liver" / "plan.json").read_text())["plan"]["intensity_stats"]) == {"AP", "PVP"}
    case = liver_case("four", seed=3, shape=(12, 12, 12), spacing=(2.0, 1.5, 1.5), origin=(0.0, -10.0, 5.0))
    assert case.phase_names == ["NC", "AP", "PVP", "DP"]
    write_case_folder(case, tmp_path / "four")
    assert main(["predict", str(tmp_path / "four"), str(tmp_path / "out.nii.gz"), "--model", str(model)]) == 0
    assert read_volume(tmp_path / "out.nii.gz", kind="label").same_grid(case.annotated)
    assert "four: NC, DP not used: the model was trained without them" in capsys.readouterr().err


def test_dicom_seg_takes_blank_sop_uids_from_the_file_meta_header(model, tmp_path, capsys) -> None:
    """TotalSegmentator's example series has blank SOP Class and Instance UIDs in its data sets (the
    file meta header keeps them): writing the SEG stopped with an internal error (KeyError: '')."""
    highdicom = pytest.importorskip("highdicom")
    import pydicom
    from pydicom.uid import generate_uid

    array = np.full((4, 16, 16), -50, np.int16)
    array[1:3, 3:13, 3:13] = 60
    files = Build.dicom_series(tmp_path / "series", array, spacing=(2.5, 1.5, 1.5), origin=(-30.0, 10.0, -5.0))
    frame_of_reference, instances = generate_uid(), []
    for path in files:
        ds = pydicom.dcmread(path)
        instances.append(str(ds.file_meta.MediaStorageSOPInstanceUID))
        ds.FrameOfReferenceUID, ds.SliceThickness, ds.SOPClassUID, ds.SOPInstanceUID = frame_of_reference, "2.5", "", ""
        ds.save_as(path)
    assert main(["predict", str(tmp_path / "series"), str(tmp_path / "seg.dcm"), "--model", str(model),
                 "--output-type", "dicom-seg"]) == 0
    seg = highdicom.seg.segread(tmp_path / "seg.dcm")
    referenced = {str(item.ReferencedSOPInstanceUID) for series in seg.ReferencedSeriesSequence
                  for item in series.ReferencedInstanceSequence}
    assert referenced == set(instances)

    for path in files:  # nothing to take them from: one line, no file
        ds = pydicom.dcmread(path)
        ds.file_meta.MediaStorageSOPInstanceUID = ""
        ds.save_as(path)
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "series"), str(tmp_path / "seg2.dcm"), "--model", str(model),
                 "--output-type", "dicom-seg"]) == 2
    assert "has no SOPInstanceUID: a DICOM-SEG cannot reference it; use --output-type nifti" in capsys.readouterr().err
    assert not (tmp_path / "seg2.dcm").exists()


def test_dicom_seg_over_a_series_with_a_blank_character_set(model, tmp_path, capfd) -> None:
    """The QIICR CT series stores Specific Character Set as '' and a one-part patient name: the SEG
    stopped with an internal error (ValueError: '' is not a valid SpecificCharacterSetValues) after
    a paragraph of pydicom advice on the name. A blank set means the default repertoire."""
    highdicom = pytest.importorskip("highdicom")
    import pydicom
    from pydicom.uid import generate_uid

    array = np.full((4, 16, 16), -50, np.int16)
    array[1:3, 3:13, 3:13] = 60
    files = Build.dicom_series(tmp_path / "series", array, spacing=(2.5, 1.5, 1.5), origin=(-30.0, 10.0, -5.0))
    frame_of_reference = generate_uid()
    for path in files:
        ds = pydicom.dcmread(path)
        ds.FrameOfReferenceUID, ds.SliceThickness = frame_of_reference, "2.5"
        ds.SpecificCharacterSet, ds.PatientName = "", "JANCT000"
        ds.save_as(path)
    capfd.readouterr()
    assert main(["predict", str(tmp_path / "series"), str(tmp_path / "seg.dcm"), "--model", str(model),
                 "--output-type", "dicom-seg"]) == 0
    assert len(highdicom.seg.segread(tmp_path / "seg.dcm").SegmentSequence) == 2
    err = capfd.readouterr().err
    assert "person name" not in err and "internal error" not in err


def test_predicting_a_dataset_prints_no_itk_warning(model, tiny_case, tmp_path, capfd) -> None:
    """Every dataset predict printed GDCM's 'WARNING: In .../itkGDCMSeriesFileNames.cxx ... No Series
    were found' (the probe for a DICOM series in each folder) to stderr."""
    write_case_folder(tiny_case("case_a", seed=1), tmp_path / "data" / "case_a")
    capfd.readouterr()
    assert main(["predict", str(tmp_path / "data"), str(tmp_path / "out"), "--model", str(model)]) == 0
    err = capfd.readouterr().err
    assert "WARNING" not in err and "GDCM" not in err


def test_a_single_scan_gets_the_checks_a_case_folder_gets(model, tiny_case, tmp_path, capsys) -> None:
    """A 10 m voxel header was refused in a case folder but an internal MemoryError (3.38 PiB) as a
    single file or in a folder of scans; a constant image got a confident liver with exit 0."""
    pvp = tiny_case("a", seed=1).phases["PVP"]
    bad = {"huge": (pvp.with_array(pvp.array), "absurd voxel spacing"),
           "air": (pvp.with_array(np.full_like(pvp.array, -1024)), "the image is constant")}
    huge, _ = bad["huge"]
    bad["huge"] = (type(huge)(huge.array, (1e4, 1e4, 1e4), huge.origin_mm, huge.direction), "absurd voxel spacing")
    for name, (volume, message) in bad.items():
        write_volume(volume, tmp_path / f"{name}.nii.gz")
        write_volume(volume, tmp_path / f"scans_{name}" / f"patient_{name}.nii.gz")
        for given in (tmp_path / f"{name}.nii.gz", tmp_path / f"scans_{name}"):
            capsys.readouterr()
            assert main(["predict", str(given), str(tmp_path / f"out_{name}"), "--model", str(model)]) == 2
            err = capsys.readouterr().err
            errors = [line for line in err.splitlines() if line.startswith("error:")]
            assert len(errors) == 1 and message in errors[0] and f"{name}.nii.gz" in errors[0], err
            assert "internal error" not in err
            assert not (tmp_path / f"out_{name}").exists()


def test_a_phase_file_given_alone_is_that_phase_of_its_folders_case(model, tiny_case, tmp_path) -> None:
    """``predict case_000/PVP.nii.gz out/`` wrote ``out/PVP.nii.gz``, so a loop over the cases kept the
    last one only; and an ``AP.nii.gz`` given alone was read as PVP."""
    for name, seed in (("case_000", 1), ("case_001", 2)):
        write_case_folder(tiny_case(name, seed=seed), tmp_path / name)
        assert main(["predict", str(tmp_path / name / "PVP.nii.gz"), str(tmp_path / "out"), "--model", str(model)]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["case_000.nii.gz", "case_001.nii.gz"]
    [case] = read_prediction_inputs(tmp_path / "case_001" / "AP.nii.gz", "PVP")
    assert case.case_id == "case_001" and list(case.phases) == ["AP"] and case.annotated_phase == "AP"
    [scan] = read_prediction_inputs(tmp_path / "case_001" / "PVP.nii.gz", "PVP")
    assert scan.case_id == "case_001" and list(scan.phases) == ["PVP"]
    (tmp_path / "store" / "ab12cd").mkdir(parents=True)  # git-annex, DVC: the file is a link into a store
    (tmp_path / "case_001" / "AP.nii.gz").rename(tmp_path / "store" / "ab12cd" / "AP.nii.gz")
    (tmp_path / "case_001" / "AP.nii.gz").symlink_to(tmp_path / "store" / "ab12cd" / "AP.nii.gz")
    [linked] = read_prediction_inputs(tmp_path / "case_001" / "AP.nii.gz", "PVP")
    assert linked.case_id == "case_001"


def test_a_scan_given_twice_or_an_output_named_in_another_format_is_refused(model, tiny_case, tmp_path, capsys) -> None:
    """p1.nii beside p1.nii.gz reported 2 cases and wrote one file; OUTPUT seg.nrrd (or seg.nii.gz with
    dicom-seg) became a folder of that name with 'labels in seg.nrrd'."""
    pvp = tiny_case("p1", seed=1).phases["PVP"]
    for name in ("p1.nii", "p1.nii.gz", "p2.nii.gz"):
        write_volume(pvp, tmp_path / "scans" / name)
    with pytest.raises(InputError, match=r"scan p1 is given 2 times \(p1.nii, p1.nii.gz\); keep one file per scan"):
        read_prediction_inputs(tmp_path / "scans", "PVP")
    write_volume(pvp, tmp_path / "one.nii.gz")
    for output, extra in (("seg.nrrd", []), ("seg.mha", []), ("seg.dcm", [])):
        capsys.readouterr()
        assert main(["predict", str(tmp_path / "one.nii.gz"), str(tmp_path / output), "--model", str(model), *extra]) == 2
        assert "--output-type nifti writes .nii.gz or .nii; name the output so, or give a folder" in capsys.readouterr().err
        assert not (tmp_path / output).exists()
    with pytest.raises(InputError, match="names a .nii.gz file, but --output-type dicom-seg writes .dcm"):
        label_paths(["x", "y"], tmp_path / "seg.nii.gz", "dicom-seg")


def test_a_label_file_named_after_a_phase_beside_the_phases_is_not_read(model, tiny_case, tmp_path) -> None:
    """A case folder with ``PVP_seg.nii.gz`` beside its phases was refused ('unknown phase name
    PVP_seg'), though predict reads no label file beside the images."""
    case = tiny_case("c1", seed=1)
    write_case_folder(case, tmp_path / "c1")
    (tmp_path / "c1" / "label.nii.gz").rename(tmp_path / "c1" / "PVP_seg.nii.gz")
    [read] = read_prediction_inputs(tmp_path / "c1", "PVP")
    assert read.case_id == "c1" and set(read.phases) == set(case.phases) and read.label is None


def test_a_scan_without_its_rescale_intercept_is_warned_about_by_predict_only(tiny_case, tmp_path, caplog) -> None:
    """Stored values 0…4095 (no rescale intercept) were segmented with a warning blaming the scanner or
    the timing; the warning names the case and phase, and reading an MRI for a translator gives none."""
    from diff4mmlits.data.casefiles import read_checked_image

    pvp = tiny_case("raw", seed=1).phases["PVP"]
    write_volume(pvp.with_array((4 * (pvp.array - pvp.array.min()) + 1).astype(np.int16)), tmp_path / "raw.nii.gz")
    with caplog.at_level("WARNING"):
        read_checked_image(tmp_path / "raw.nii.gz")
        assert not caplog.records
        read_prediction_inputs(tmp_path / "raw.nii.gz", "PVP")
    assert "raw/PVP: no voxel below 0 HU" in caplog.text and "rescale intercept" in caplog.text


def test_a_folder_of_single_scans_gives_one_label_per_scan(model, tiny_case, tmp_path) -> None:
    """A folder of scans named by patient (as TotalSegmentator users keep them) was refused as 'no case
    folders found'; each scan is now a case read as the annotated phase, and a label file beside them
    (``*_seg``) is not taken for a scan."""
    scans = tmp_path / "scans"
    for name, seed in (("patient_a", 1), ("patient-b", 2)):
        case = tiny_case(name, seed=seed)
        write_volume(case.phases["PVP"], scans / f"{name}.nii.gz")
    write_volume(case.label, scans / "patient-b_seg.nii.gz")
    assert [c.case_id for c in read_prediction_inputs(scans, "PVP")] == ["patient-b", "patient_a"]
    assert main(["predict", str(scans), str(tmp_path / "out"), "--model", str(model)]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["patient-b.nii.gz", "patient_a.nii.gz"]
    assert read_volume(tmp_path / "out" / "patient_a.nii.gz", kind="label").same_grid(read_volume(scans / "patient_a.nii.gz"))
    # files named by phase are still one case, and a folder with case folders still a dataset
    write_volume(case.phases["PVP"], tmp_path / "one" / "PVP.nii.gz")
    write_volume(case.phases["AP"], tmp_path / "one" / "AP.nii.gz")
    assert [(c.case_id, c.phase_names) for c in read_prediction_inputs(tmp_path / "one", "PVP")] == [("one", ["AP", "PVP"])]
