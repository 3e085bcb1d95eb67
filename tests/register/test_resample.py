"""Resampling onto the annotated grid: identity, labels, field of view, displacement fields."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from diff4mmlits.data.volume import Volume
from diff4mmlits.register.resample import FILL_HU, displacement_field_mm, identity_transform, resample_onto


def test_identity_on_the_same_grid_reproduces_the_image(rng) -> None:
    image = Volume(rng.normal(50, 20, (6, 7, 8)).astype(np.float32), (2.0, 1.5, 1.0), (3.0, -4.0, 5.0))
    out = resample_onto(image, image)
    assert out.same_grid(image) and out.array.dtype == np.float32
    np.testing.assert_allclose(out.array, image.array, atol=1e-4)


def test_labels_stay_labels_and_outside_the_field_of_view_is_air() -> None:
    label = np.zeros((6, 6, 6), np.uint8)
    label[2:4, 2:4, 2:4] = 2
    moving = Volume(label, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), kind="label")
    reference = Volume(np.zeros((6, 6, 6), np.float32), (1.0, 1.0, 1.0), (0.0, 0.0, 3.0))  # 3 mm along x
    moved = resample_onto(moving, reference)
    assert set(np.unique(moved.array)) <= {0, 2} and moved.kind == "label"
    assert moved.array[2, 2, 0] == 2 and moved.array[2, 2, 1] == 0  # x index 0 of the reference is x = 3 mm
    image = moving.with_array(label.astype(np.float32) * 50.0, kind="image")
    out = resample_onto(image, reference)
    assert np.all(out.array[:, :, 3:] == FILL_HU)  # beyond the phase's field of view


def test_displacement_field_of_a_translation_is_the_offset_in_zyx() -> None:
    reference = Volume(np.zeros((3, 4, 5), np.float32), (2.0, 1.0, 1.0), (1.0, 2.0, 3.0))
    field = displacement_field_mm(sitk.TranslationTransform(3, (0.5, -1.0, 4.0)), reference)  # ITK (x, y, z)
    assert field.shape == (3, 4, 5, 3)
    np.testing.assert_allclose(field[..., 0], 4.0)  # z
    np.testing.assert_allclose(field[..., 1], -1.0)  # y
    np.testing.assert_allclose(field[..., 2], 0.5)  # x
    np.testing.assert_allclose(displacement_field_mm(identity_transform(), reference), 0.0)
