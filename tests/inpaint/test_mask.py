"""Mask preparation: per-component in-plane closing (5×5) then one dilation (3×3), checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from diff4mmlits.data.volume import Volume
from diff4mmlits.errors import InputError
from diff4mmlits.inpaint.mask import dilate_tumor_mask, kernel_vox_from_mm, normal_label


def label_volume(array: np.ndarray, spacing=(2.0, 1.0, 1.0)) -> Volume:
    return Volume(array.astype(np.uint8), spacing_mm=spacing, kind="label")


def test_single_voxel_becomes_a_3x3_square_in_its_slice_only() -> None:
    label = np.ones((3, 9, 9), np.uint8)
    label[1, 4, 4] = 2
    mask = dilate_tumor_mask(label_volume(label)).array
    expected = np.zeros_like(mask)
    expected[1, 3:6, 3:6] = 1
    np.testing.assert_array_equal(mask, expected)
    assert mask.dtype == np.uint8


def test_closing_fills_a_hollow_square_before_the_dilation() -> None:
    label = np.zeros((1, 13, 13), np.uint8)
    label[0, 4:9, 4:9] = 2
    label[0, 5:8, 5:8] = 1  # hollow 5×5 ring around a 3×3 liver hole
    mask = dilate_tumor_mask(label_volume(label)).array
    expected = np.zeros_like(mask)
    expected[0, 3:10, 3:10] = 1  # closed to a full 5×5, dilated to 7×7
    np.testing.assert_array_equal(mask, expected)


def test_components_are_closed_separately_so_nearby_tumors_are_not_bridged() -> None:
    label = np.zeros((1, 10, 12), np.uint8)
    label[0, 3:7, 2:4] = 2   # tumor A: columns 2–3
    label[0, 3:7, 7:9] = 2   # tumor B: columns 7–8, a 3-column gap (a joint 5×5 closing would bridge it)
    mask = dilate_tumor_mask(label_volume(label)).array[0]
    np.testing.assert_array_equal(mask[2:8, 1:5], 1)    # A dilated by one voxel
    np.testing.assert_array_equal(mask[2:8, 6:10], 1)   # B dilated by one voxel
    assert not mask[:, 5].any()                          # the middle of the gap stays free
    assert mask.sum() == 2 * 6 * 4


def test_tumor_on_the_image_border_is_not_eroded() -> None:
    label = np.zeros((1, 8, 8), np.uint8)
    label[0, 0:2, 0:3] = 2
    mask = dilate_tumor_mask(label_volume(label)).array[0]
    expected = np.zeros_like(mask)
    expected[0:3, 0:4] = 1
    np.testing.assert_array_equal(mask, expected)


def test_no_dilation_across_slices_and_empty_masks_pass_through() -> None:
    label = np.zeros((4, 9, 9), np.uint8)
    label[2, 3:6, 3:6] = 2
    mask = dilate_tumor_mask(label_volume(label)).array
    assert mask[2].any() and not mask[[0, 1, 3]].any()
    empty = dilate_tumor_mask(label_volume(np.ones((4, 9, 9)))).array
    assert empty.shape == (4, 9, 9) and not empty.any()


def test_kernel_sizes_in_mm_follow_the_spacing() -> None:
    assert kernel_vox_from_mm(4.0, (0.8, 0.8)) == (5, 5)
    assert kernel_vox_from_mm(3.0, (1.0, 3.0)) == (3, 1)
    label = np.zeros((1, 15, 15), np.uint8)
    label[0, 7, 7] = 2
    in_vox = dilate_tumor_mask(label_volume(label, (1.0, 0.8, 0.8)), close_kernel_vox=5, dilate_kernel_vox=5).array
    in_mm = dilate_tumor_mask(label_volume(label, (1.0, 0.8, 0.8)), close_kernel_mm=4.0, dilate_kernel_mm=4.0).array
    np.testing.assert_array_equal(in_vox, in_mm)
    assert in_mm.sum() == 25


@pytest.mark.parametrize("kwargs", [{"close_kernel_vox": 4}, {"dilate_kernel_vox": 0}, {"close_kernel_mm": -1.0}])
def test_bad_kernels_are_input_errors(kwargs: dict) -> None:
    with pytest.raises(InputError, match="kernel"):
        dilate_tumor_mask(label_volume(np.ones((2, 5, 5))), **kwargs)


def test_normal_label_turns_tumor_into_liver() -> None:
    label = np.array([[[0, 1, 2, 2]]], np.uint8)
    np.testing.assert_array_equal(normal_label(label_volume(label)).array, [[[0, 1, 1, 1]]])
