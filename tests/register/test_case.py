"""register_case: every phase onto the annotated grid; missing phases; identity; bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diff4mmlits.config import resolve_config
from diff4mmlits.data.case import Case
from diff4mmlits.data.volume import Volume
from diff4mmlits.errors import InputError
from diff4mmlits.register import register_case
from diff4mmlits.register.resample import resample_onto


def test_every_phase_lands_on_the_annotated_grid_with_qc(shifted_case, smoke_config) -> None:
    case, truth, _ = shifted_case
    result = register_case(case, smoke_config, truth_labels=truth)
    result.case.require_registered()
    assert result.case.phases["PVP"] is case.annotated  # the annotated phase is copied unchanged
    assert result.case.label is case.label
    assert set(result.transforms) == {"NC", "AP", "DP"}
    for name in ("NC", "AP", "DP"):
        entry = result.qc["phases"][name]
        assert entry["status"] == "registered"
        assert entry["liver_dice"]["after"] > entry["liver_dice"]["before"]
        assert entry["mattes_mi_region"]["after"] <= entry["mattes_mi_region"]["before"]
    assert result.qc["phases"]["PVP"] == {"status": "reference"}
    assert result.qc["region"]["source"] == "liver" and math.isfinite(result.qc["seconds"])


def test_a_missing_phase_is_skipped(shifted_case, smoke_config) -> None:
    case, _, _ = shifted_case
    two = Case(case.case_id, {"PVP": case.phases["PVP"], "AP": case.phases["AP"]}, label=case.label)
    result = register_case(two, smoke_config)
    assert result.case.phase_names == ["AP", "PVP"]
    assert set(result.transforms) == {"AP"}
    assert result.qc["phases"]["NC"] == {"status": "missing"} and result.qc["phases"]["DP"] == {"status": "missing"}
    single = register_case(Case(case.case_id, {"PVP": case.phases["PVP"]}, label=case.label), smoke_config)
    assert single.transforms == {} and single.case.phase_names == ["PVP"]


def test_method_none_is_the_identity(shifted_case) -> None:
    case, _, _ = shifted_case
    config = resolve_config("smoke", overrides=["register.method=none"]).register
    result = register_case(case, config)
    point = (10.0, -20.0, 30.0)
    for name, transform in result.transforms.items():
        assert np.allclose(transform.TransformPoint(point), point)
        assert result.qc["phases"][name]["kept"] == "none"
        np.testing.assert_allclose(result.case.phases[name].array, resample_onto(case.phases[name], case.annotated).array)
    same_grid = Case("same", {"PVP": case.annotated, "AP": case.annotated.with_array(case.annotated.array + 5)}, label=case.label)
    np.testing.assert_allclose(register_case(same_grid, config).case.phases["AP"].array, case.annotated.array + 5, atol=1e-3)


def test_phases_that_do_not_overlap_give_one_clear_line(shifted_case, smoke_config) -> None:
    case, _, _ = shifted_case
    far = case.phases["AP"]
    far = Volume(far.array, far.spacing_mm, tuple(o + 5000.0 for o in far.origin_mm))
    bad = Case(case.case_id, {"PVP": case.annotated, "AP": far}, label=case.label)
    with pytest.raises(InputError, match=r"shifted/AP: covers 0% of the PVP liver region .* do not overlap") as err:
        register_case(bad, smoke_config)
    assert "\n" not in str(err.value)


def test_a_label_off_the_annotated_grid_gives_one_clear_line(shifted_case) -> None:
    case, _, _ = shifted_case
    label = case.label
    shifted_label = Volume(label.array, label.spacing_mm, (label.origin_mm[0] + 7.0, *label.origin_mm[1:]), kind="label")
    with pytest.raises(InputError, match=r"label vs PVP: origin .* differs") as err:
        Case(case.case_id, case.phases, label=shifted_label)
    assert "\n" not in str(err.value)


def test_phases_registered_in_parallel_threads_equal_one_by_one(shifted_case, smoke_config) -> None:
    case, _, _ = shifted_case
    serial = register_case(case, smoke_config, workers=1)
    parallel = register_case(case, smoke_config, workers=3)
    for name in ("NC", "AP", "DP"):
        assert np.array_equal(serial.case.phases[name].array, parallel.case.phases[name].array), name
        assert serial.transforms[name].GetParameters() == parallel.transforms[name].GetParameters(), name
        untimed = [[{k: v for k, v in stage.items() if k != "seconds"} for stage in result.qc["phases"][name]["stages"]]
                   for result in (serial, parallel)]
        assert untimed[0] == untimed[1], name
