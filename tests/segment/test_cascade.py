"""The liver-region cascade: the crop box, cropping and pasting back, the two spacings, and both
stages trained, resumed and predicting through one model folder."""

from __future__ import annotations

import numpy as np
import pytest
from segment_cases import make_case

from diff4mmlits.config import resolve_config
from diff4mmlits.data.volume import Volume
from diff4mmlits.runfolder import RunFolder
from diff4mmlits.segment.cascade import (
    LIVER_MODEL,
    crop_case,
    crop_volume,
    liver_box,
    liver_spacing,
    paste_label,
    small_tumor_diameter_mm,
    tumor_spacing,
)
from diff4mmlits.segment.predict import load_segmenter, segment_case
from diff4mmlits.segment.stage import train_run
from finished_stages import mark_finished, put_case, write_manifest


def test_the_box_is_the_liver_plus_the_margin_in_mm_clipped_to_the_grid() -> None:
    liver = np.zeros((20, 30, 40), bool)
    liver[5:10, 10:20, 3:8] = True
    box = liver_box(liver, spacing_mm=(2.0, 1.0, 0.5), margin_mm=3.0)  # 3 mm = 2, 3, 6 voxels
    assert box == (slice(3, 12), slice(7, 23), slice(0, 14))
    assert liver_box(np.zeros((4, 5, 6), bool), (1.0, 1.0, 1.0), 10.0) == (slice(0, 4), slice(0, 5), slice(0, 6))


def test_cropping_keeps_world_positions_and_pasting_back_restores_the_grid() -> None:
    direction = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])  # a rotated grid
    case = make_case(shape=(12, 20, 24), spacing=(2.5, 0.8, 0.7), origin=(5.0, -30.0, 12.0), direction=direction)
    box = liver_box(case.liver_mask, case.annotated.spacing_mm, margin_mm=2.0)
    cropped = crop_case(case, box)
    assert cropped.annotated.shape == tuple(s.stop - s.start for s in box)
    start = np.array([s.start for s in box])
    np.testing.assert_allclose(cropped.annotated.index_to_world(np.array([1, 2, 3])),
                               case.annotated.index_to_world(start + [1, 2, 3]))
    assert np.array_equal(cropped.phases["AP"].array, case.phases["AP"].array[box])
    pasted = paste_label(cropped.label, case.annotated, box)
    assert pasted.same_grid(case.annotated) and pasted.kind == "label"
    assert np.array_equal(pasted.array[box], cropped.label.array)
    outside = np.ones(case.annotated.shape, bool)
    outside[box] = False
    assert not pasted.array[outside].any()
    assert np.array_equal(pasted.array, case.label.array)  # the margin holds all of the liver


def test_stage_spacings() -> None:
    # stage one: coarsened only when the median image is larger than the limit
    assert liver_spacing([(2.0, 1.0, 1.0)] * 3, [(100, 200, 256)] * 3, max_vox=128) == (4.0, 2.0, 2.0)
    assert liver_spacing([(2.0, 1.0, 1.0)] * 3, [(40, 64, 64)] * 3, max_vox=128) == (2.0, 1.0, 1.0)
    # stage two: in-plane fine enough that an 8 mm tumor spans 4 voxels; the slice axis kept
    assert tumor_spacing((5.0, 3.7, 3.7), small_tumor_mm=8.0, min_tumor_vox=4) == (5.0, 2.0, 2.0)
    assert tumor_spacing((5.0, 0.7, 0.7), small_tumor_mm=8.0, min_tumor_vox=4) == (5.0, 0.7, 0.7)
    case = make_case(spacing=(1.0, 1.0, 1.0))
    diameter = small_tumor_diameter_mm([case])
    voxels = int((case.label.array == 2).sum())
    assert diameter == pytest.approx((6 * voxels / np.pi) ** (1 / 3))


def test_crop_volume_of_the_whole_box_is_the_volume() -> None:
    volume = Volume(np.arange(24, dtype=np.float32).reshape(2, 3, 4), (1.0, 2.0, 3.0), (4.0, 5.0, 6.0))
    whole = crop_volume(volume, (slice(0, 2), slice(0, 3), slice(0, 4)))
    assert whole.same_grid(volume) and np.array_equal(whole.array, volume.array)


def test_both_stages_train_resume_and_predict_through_one_model_folder(tiny_case, tmp_path) -> None:
    cases = [tiny_case(f"case_{i}", seed=i) for i in range(4)]
    run = RunFolder(tmp_path / "run")
    config = resolve_config("smoke", overrides=["segment.synthetic=none", "segment.epochs=3"])
    run.save_config(config)
    for case in cases:
        put_case(run, "registered", case)
    ids = [c.case_id for c in cases]
    write_manifest(run, cases, train=ids[:3], validation=ids[3:], test=[])
    mark_finished(run, config, "register")
    lines: list[str] = []
    result = train_run(run, config, echo=lines.append)
    assert any(line.startswith("stage 1 of 2") for line in lines) and any(line.startswith("stage 2 of 2") for line in lines)
    losses = [float(row["train_loss"]) for row in result.rows]
    assert losses[-1] < losses[0]
    assert (run.segmenter_dir / LIVER_MODEL / "weights.safetensors").is_file()
    longer = resolve_config("smoke", overrides=["segment.synthetic=none", "segment.epochs=4"])
    resumed = train_run(run, longer, resume=True, echo=lines.append)
    assert resumed.epochs_done == 4
    segmenter = load_segmenter(run.segmenter_dir, device="cpu")
    assert segmenter.liver is not None and segmenter.margin_mm == config.segment.cascade_margin_mm
    # normalization auto (the default): stage two relative to the liver, stage one on the dataset's statistics
    assert config.segment.normalization == "auto"
    assert segmenter.plan.normalization == "liver" and segmenter.liver.plan.normalization == "dataset"
    label = segment_case(cases[0], segmenter)
    assert label.same_grid(cases[0].annotated) and set(np.unique(label.array)) <= {0, 1, 2}


def test_liver_normalisation_trains_stage_two_on_the_label_and_predicts_on_stage_ones_liver(tiny_case, tmp_path,
                                                                                             monkeypatch) -> None:
    import diff4mmlits.segment.predict as predict_module
    from diff4mmlits.errors import InputError
    from diff4mmlits.segment.dataset import LIVER_EXTRA
    from diff4mmlits.segment.train import train_model

    cases = [tiny_case(f"case_{i}", seed=i) for i in range(3)]
    config = resolve_config("smoke", overrides=["segment.synthetic=none", "segment.epochs=1",
                                                "segment.normalization=liver"]).segment
    with pytest.raises(InputError, match="needs segment.cascade=true"):
        train_model(cases[:2], cases[2:], config.model_copy(update={"cascade": False}), tmp_path / "single", seed=0,
                    echo=lambda _: None)
    train_model(cases[:2], cases[2:], config, tmp_path / "cascade", seed=0, echo=lambda _: None)
    segmenter = load_segmenter(tmp_path / "cascade", device="cpu")
    assert segmenter.plan.normalization == "liver" and segmenter.liver.plan.normalization == "dataset"
    seen: list[tuple[str, bool]] = []
    prepare = predict_module.prepare_case

    def recording(case, plan, phases):
        seen.append((plan.normalization, LIVER_EXTRA in case.extras))
        return prepare(case, plan, phases)

    monkeypatch.setattr(predict_module, "prepare_case", recording)
    label = segment_case(cases[2], segmenter)
    assert label.same_grid(cases[2].annotated)
    assert seen == [("dataset", False), ("liver", True)]  # stage one as trained, stage two on stage one's liver
