"""The liver focus: dilation in mm, body-mask fallback."""

from __future__ import annotations

import logging

import numpy as np

from diff4mmlits.data.case import Case
from diff4mmlits.data.volume import Volume
from diff4mmlits.register.roi import body_mask, dilate_mm, liver_roi


def test_dilate_mm_is_a_ball_in_millimetres_on_anisotropic_grids() -> None:
    mask = np.zeros((21, 21, 21), bool)
    mask[10, 10, 10] = True
    grown = dilate_mm(mask, spacing_mm=(4.0, 1.0, 1.0), margin_mm=8.0)
    assert grown[10, 10, 2] and grown[10, 10, 18] and not grown[10, 10, 1]  # 8 voxels of 1 mm along x
    assert grown[8, 10, 10] and not grown[7, 10, 10]  # 2 voxels of 4 mm along z
    assert not grown[8, 10, 2]  # the corner of the box lies outside the ball
    assert np.array_equal(dilate_mm(mask, (1.0, 1.0, 1.0), 0.0), mask)


def test_liver_roi_is_the_dilated_liver(shifted_case) -> None:
    case, _, _ = shifted_case
    roi = liver_roi(case, margin_mm=20.0)
    liver = case.label.array > 0
    assert roi.source == "liver"
    assert roi.mask.same_grid(case.annotated)
    assert np.all(roi.mask.array[liver] > 0)
    assert roi.voxels > liver.sum() * 1.3


def test_without_a_liver_the_body_mask_is_used_with_a_warning(shifted_case, caplog) -> None:
    case, _, _ = shifted_case
    empty = case.label.with_array(np.zeros_like(case.label.array))
    # at predict a case never has a label: "has no label" read as if something were wrong with it
    for label, reason in ((None, "no liver label to focus on"), (empty, "its label holds no liver")):
        unlabelled = Case(case.case_id, case.phases, label=label)
        with caplog.at_level(logging.WARNING, logger="diff4mmlits"):
            roi = liver_roi(unlabelled, margin_mm=20.0)
        assert roi.source == "body"
        assert f"{reason}; registering on the body mask" in caplog.text and "has no label" not in caplog.text
        caplog.clear()
        body = roi.mask.array > 0
        assert body[case.annotated.array > 0].all()  # organs are inside the body
        assert not body[0, 0, 0]  # the air in the corner is not


def test_body_mask_fills_holes_and_keeps_the_largest_component() -> None:
    image = np.full((6, 30, 30), -1000.0)
    image[:, 5:25, 5:25] = 40.0
    image[:, 12:18, 12:18] = -900.0  # gas inside the body
    image[:, 0:2, 0:2] = 40.0  # a blanket outside
    body = body_mask(Volume(image, (1.0, 1.0, 1.0)))
    assert body[:, 15, 15].all() and not body[:, 0, 0].any()
