"""Post-processing keeps the liver's largest component and only the tumors inside it."""

from __future__ import annotations

import numpy as np

from diff4mmlits.segment.postprocess import largest_component, postprocess_label


def _label() -> np.ndarray:
    label = np.zeros((12, 20, 20), dtype=np.uint8)
    label[2:10, 2:12, 2:12] = 1  # the liver
    label[4:7, 4:7, 4:7] = 2  # a tumor inside it
    label[3:5, 15:18, 15:18] = 2  # a tumor outside the liver (e.g. in the kidney)
    label[9:11, 16:19, 1:3] = 1  # a small liver-like blob elsewhere
    return label


def test_tumors_outside_the_liver_are_removed_and_inside_kept() -> None:
    label = _label()
    out = postprocess_label(label, (2.0, 1.0, 1.0))
    assert (out[3:5, 15:18, 15:18] == 0).all()
    assert (out[9:11, 16:19, 1:3] == 0).all()
    assert (out[4:7, 4:7, 4:7] == 2).all()
    inside = label.copy()
    inside[3:5, 15:18, 15:18] = 0
    inside[9:11, 16:19, 1:3] = 0
    np.testing.assert_array_equal(out, inside)  # nothing else changed
    assert out.dtype == np.uint8


def test_small_tumors_become_liver_when_asked() -> None:
    label = _label()
    label[8, 9, 9] = 2  # a one-voxel tumor in the liver: 2 mm³
    out = postprocess_label(label, (2.0, 1.0, 1.0), min_tumor_volume_mm3=10.0)
    assert out[8, 9, 9] == 1 and (out[4:7, 4:7, 4:7] == 2).all()  # 27 voxels × 2 mm³ = 54 mm³ stays


def test_empty_prediction_stays_empty() -> None:
    empty = np.zeros((4, 4, 4), dtype=np.uint8)
    np.testing.assert_array_equal(postprocess_label(empty, (1.0, 1.0, 1.0)), empty)
    assert not largest_component(empty > 0).any()
