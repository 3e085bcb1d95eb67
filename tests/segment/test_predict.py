"""Prediction writes labels on the annotated phase's original grid, from any input layout."""

from __future__ import annotations

import numpy as np
import pytest

from diff4mmlits.cli import main
from diff4mmlits.config import resolve_config
from diff4mmlits.data.io import read_volume
from diff4mmlits.data.native import write_case_folder
from diff4mmlits.errors import InputError
from diff4mmlits.segment.dataset import prepare_case
from diff4mmlits.segment.plan import fingerprint, plan_segmenter
from diff4mmlits.segment.predict import load_segmenter, predict_probabilities, segment_case
from diff4mmlits.segment.stage import predict_path, read_prediction_inputs
from diff4mmlits.segment.train import train_segmenter

OBLIQUE = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])


@pytest.fixture
def trained(tiny_case, tmp_path):
    cases = [tiny_case(f"c{i}", seed=i) for i in range(2)]
    config = resolve_config("smoke").segment.model_copy(update={"epochs": 1, "steps_per_epoch": 2})
    fp = fingerprint(cases)
    plan = plan_segmenter(fp, config)
    prepared = [prepare_case(c, plan, config.phases) for c in cases]
    run_config = resolve_config("smoke").model_dump(mode="json")  # what predict registers new cases with
    train_segmenter(prepared, [], plan, config, tmp_path / "model", seed=0, fingerprint=fp, extra_config={"run_config": run_config})
    return tmp_path / "model"


def test_prediction_lies_on_the_annotated_phase_original_grid(trained, tiny_case) -> None:
    segmenter = load_segmenter(trained, device="cpu")
    # another spacing than the plan's, an origin and an oblique direction: resampling both ways
    case = tiny_case("new", seed=7, shape=(15, 27, 29), spacing=(2.7, 1.1, 1.3), origin=(12.0, -40.0, 7.5), direction=OBLIQUE)
    label = segment_case(case, segmenter)
    assert label.same_grid(case.annotated) and label.kind == "label" and label.array.dtype == np.uint8
    assert set(np.unique(label.array)) <= {0, 1, 2}


def test_test_time_flips_average_eight_predictions(trained, tiny_case) -> None:
    segmenter = load_segmenter(trained, device="cpu")
    prepared = prepare_case(tiny_case("tta", seed=3), segmenter.plan, segmenter.phases)
    plain = predict_probabilities(segmenter, prepared.image, tta=False)
    flipped = predict_probabilities(segmenter, prepared.image, tta=True)
    assert plain.shape == flipped.shape == (3, *prepared.image.shape[1:])
    np.testing.assert_allclose(flipped.sum(0), 1.0, atol=1e-4)
    assert not np.allclose(plain, flipped)
    # the mean of the 8 predictions of the flipped image (each flipped back): z, y and x, alone and combined
    expected = np.mean([np.flip(predict_probabilities(segmenter, np.flip(prepared.image, axes).copy(), tta=False), axes)
                        for axes in [(), (1,), (2,), (3,), (1, 2), (1, 3), (2, 3), (1, 2, 3)]], axis=0)
    np.testing.assert_allclose(flipped, expected, atol=1e-5)


def test_predict_reads_a_case_folder_or_a_dataset_and_writes_one_label_per_case(trained, tiny_case, tmp_path) -> None:
    dataset = tmp_path / "dataset"
    cases = [tiny_case("a", seed=1, spacing=(2.5, 1.4, 1.4)), tiny_case("b", seed=2, phases=("AP", "PVP"), origin=(5.0, 5.0, 5.0))]
    for case in cases:
        write_case_folder(case, dataset / case.case_id)
    written = predict_path(trained, dataset, tmp_path / "out", device="cpu")
    assert sorted(p.name for p in written) == ["a.nii.gz", "b.nii.gz"]
    for case in cases:
        label = read_volume(tmp_path / "out" / f"{case.case_id}.nii.gz", kind="label")
        assert label.same_grid(case.annotated)
    assert len(read_prediction_inputs(dataset / "a")) == 1  # one case folder is one case
    code = main(["predict", "--model", str(trained), str(dataset / "b"), str(tmp_path / "one"), "--device", "cpu"])
    assert code == 0 and (tmp_path / "one" / "b.nii.gz").is_file()


def test_bad_inputs_are_one_line_errors(trained, tmp_path, capsys) -> None:
    (tmp_path / "input").mkdir()
    assert main(["predict", "--model", str(tmp_path / "nope"), str(tmp_path / "input"), str(tmp_path / "o")]) == 2
    assert "model folder not found" in capsys.readouterr().err
    with pytest.raises(InputError, match="input not found"):
        read_prediction_inputs(tmp_path / "missing")


def test_unregistered_input_is_registered_then_predicted_on_the_pvp_grid(trained, phantom_case, tmp_path) -> None:
    case = phantom_case.case
    assert not case.is_registered()  # breathing-displaced phases on their own grids
    write_case_folder(case, tmp_path / "in" / case.case_id)
    written = predict_path(trained, tmp_path / "in", tmp_path / "out", device="cpu")
    label = read_volume(written[0], kind="label")
    assert label.same_grid(case.annotated)


def _cascade(segmenter):
    """The single-stage test model standing in for both stages of a cascade."""
    from dataclasses import replace

    return replace(segmenter, liver=segmenter, margin_mm=10.0)


def _stage_one_finding(monkeypatch, liver_of) -> None:
    """Stage one replaced by a finder that returns ``liver_of(case)`` (bool, on the case's grid) as label 1."""
    import diff4mmlits.segment.predict as predict_module

    real = predict_module.segment_case

    def fake(case, segmenter, tta=None, announce=True):
        if segmenter.liver is None:  # stage one itself
            return case.annotated.with_array(liver_of(case).astype(np.uint8), kind="label")
        return real(case, segmenter, tta, announce)

    monkeypatch.setattr(predict_module, "segment_case", fake)


def test_an_unlabelled_case_registers_on_the_liver_stage_one_finds(trained, phantom_case, monkeypatch, tmp_path) -> None:
    import json

    from diff4mmlits.segment.resample import resample_onto
    from diff4mmlits.segment.stage import ensure_registered

    segmenter = _cascade(load_segmenter(trained, device="cpu"))
    truth = phantom_case.case
    unlabelled = type(truth)(truth.case_id, truth.phases, None, truth.annotated_phase)
    _stage_one_finding(monkeypatch, lambda c: resample_onto(truth.label, c.annotated).array > 0)
    ready = ensure_registered(unlabelled, segmenter.model_config["run_config"], tmp_path / "kept", segmenter)
    qc = json.loads((tmp_path / "kept" / "qc.json").read_text())
    assert qc["region"]["source"] == "liver" and "stage one" in qc["region"]["found_by"]
    assert ready.is_registered() and ready.label is None  # the found liver only chose the region
    assert not (tmp_path / "kept" / "label.nii.gz").exists()


def test_an_implausible_liver_before_registration_falls_back_to_the_body(trained, phantom_case, monkeypatch, tmp_path) -> None:
    import json

    from diff4mmlits.segment.stage import ensure_registered

    segmenter = _cascade(load_segmenter(trained, device="cpu"))
    truth = phantom_case.case
    unlabelled = type(truth)(truth.case_id, truth.phases, None, truth.annotated_phase)

    def one_voxel(case):
        mask = np.zeros(case.annotated.shape, bool)
        mask[tuple(n // 2 for n in mask.shape)] = True
        return mask

    _stage_one_finding(monkeypatch, one_voxel)
    ensure_registered(unlabelled, segmenter.model_config["run_config"], tmp_path / "kept", segmenter)
    qc = json.loads((tmp_path / "kept" / "qc.json").read_text())
    assert qc["region"]["source"] == "body" and "found_by" not in qc["region"]


def test_a_model_saved_before_phase_dropout_reads_as_trained_without_it(trained, tiny_case, tmp_path, caplog) -> None:
    import json
    import shutil

    from diff4mmlits.data.case import Case
    from diff4mmlits.segment.stage import predict_cases

    assert load_segmenter(trained, device="cpu").config.phase_dropout_prob == 0.25  # saved with its setting
    old = tmp_path / "old_model"
    shutil.copytree(trained, old)
    saved = json.loads((old / "config.json").read_text())
    del saved["segment"]["phase_dropout_prob"]  # as an older version wrote it
    (old / "config.json").write_text(json.dumps(saved))
    segmenter = load_segmenter(old, device="cpu")
    assert segmenter.config.phase_dropout_prob == 0.0
    full = tiny_case("pvp_only", seed=4)
    study = Case(full.case_id, {"PVP": full.phases["PVP"]}, None, "PVP")
    with caplog.at_level("WARNING", logger="diff4mmlits"):
        predict_cases([study], segmenter, tmp_path / "out")
    assert "NC, AP, DP missing" in caplog.text and "phase_dropout_prob" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="diff4mmlits"):
        predict_cases([study], load_segmenter(trained, device="cpu"), tmp_path / "out2")
    assert "missing" not in caplog.text  # a model trained with phase dropout saw such studies


def test_a_model_saved_under_old_setting_names_loads(trained, tmp_path) -> None:
    """A model folder's config.json goes through the same renames as config files (config.RENAMED)."""
    import json
    import shutil

    old = tmp_path / "old_names"
    shutil.copytree(trained, old)
    saved = json.loads((old / "config.json").read_text())
    saved["segment"]["amp"] = saved["segment"].pop("mixed_precision")
    del saved["segment"]["synthetic_augmentation"]
    saved["segment"]["synthetic_grain_noise_prob"] = None
    (old / "config.json").write_text(json.dumps(saved))
    segmenter = load_segmenter(old, device="cpu")
    assert segmenter.config.mixed_precision == load_segmenter(trained, device="cpu").config.mixed_precision
    assert segmenter.config.synthetic_augmentation == {}


def test_predict_refuses_to_write_into_its_input(trained, tiny_case, tmp_path) -> None:
    """``predict CASE CASE/label.nii.gz`` replaced the case's own ground truth and exited 0."""
    case_folder = tmp_path / "case"
    write_case_folder(tiny_case("c", seed=1), case_folder)
    label = case_folder / "label.nii.gz"
    before = label.read_bytes()
    for output in (label, case_folder, case_folder / "predictions"):
        with pytest.raises(InputError, match="OUTPUT is (the|inside the) INPUT"):
            predict_path(trained, case_folder, output, device="cpu")
    assert label.read_bytes() == before
    assert not (case_folder / "predictions").exists() and not (case_folder / "c.nii.gz").exists()
