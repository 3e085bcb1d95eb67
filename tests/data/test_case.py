"""`Case`: phases in canonical order, the annotated phase required, the label on its grid."""

from __future__ import annotations

import numpy as np
import pytest
from data_builders import Build

from diff4mmlits.data.case import Case, liver_and_tumor_volume_ml
from diff4mmlits.errors import InputError


def test_phases_are_kept_in_channel_order_and_masks_follow_the_label() -> None:
    build = Build()
    pvp, ap = build.ct(), build.ct(seed=1)
    label = build.label(pvp)
    case = Case("c", {"PVP": pvp, "AP": ap}, label)
    assert case.phase_names == ["AP", "PVP"] and list(case.phases) == ["AP", "PVP"]
    assert case.annotated is pvp
    np.testing.assert_array_equal(case.liver_mask, label.array > 0)
    np.testing.assert_array_equal(case.tumor_mask, label.array == 2)
    assert case.is_registered()
    liver_ml, tumor_ml = liver_and_tumor_volume_ml(label)
    voxel_ml = 2.5 * 0.8 * 0.8 / 1000
    assert liver_ml == pytest.approx(np.count_nonzero(label.array) * voxel_ml)
    assert tumor_ml == pytest.approx(np.count_nonzero(label.array == 2) * voxel_ml)


@pytest.mark.parametrize(
    ("phases", "match"),
    [({"AP": 0}, "annotated phase PVP is missing"), ({"PVP": 0, "T1": 0}, "unknown phase name")],
)
def test_case_refuses_bad_phases(phases: dict, match: str) -> None:
    volume = Build().ct()
    with pytest.raises(InputError, match=match):
        Case("c", {name: volume for name in phases})


def test_label_off_grid_is_refused_and_unregistered_phases_are_named() -> None:
    build = Build()
    pvp = build.ct()
    with pytest.raises(InputError, match="c/label vs PVP: spacing"):
        Case("c", {"PVP": pvp}, build.label(build.ct(spacing=(3.0, 0.8, 0.8))))
    case = Case("c", {"PVP": pvp, "AP": build.ct(origin=(10.0, 0.0, 0.0))})
    assert not case.is_registered()
    with pytest.raises(InputError, match="c/AP vs PVP: origin .* run 'diff4mmlits register' first"):
        case.require_registered()


def test_extras_must_lie_on_the_annotated_grid() -> None:
    build = Build()
    pvp = build.ct()
    mask = build.label(build.ct(origin=(0.0, 3.0, 0.0)))
    with pytest.raises(InputError, match="c/inpaint_mask vs PVP: origin"):
        Case("c", {"PVP": pvp}, extras={"inpaint_mask": mask})


def test_masks_need_a_label() -> None:
    with pytest.raises(InputError, match="has no label"):
        _ = Case("c", {"PVP": Build().ct()}).liver_mask
