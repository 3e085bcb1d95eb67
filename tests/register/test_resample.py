"""Resampling onto the annotated grid: identity, labels, field of view, displacement fields."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from diff4mmlits.data.volume import Volume
from diff4mmlits.register.resample import (
    FILL_HU,
    dense_transform,
    displacement_field_mm,
    identity_transform,
    resample_onto,
)


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


def _smooth_bspline(reference: Volume) -> sitk.Transform:
    """A B-spline over ``reference``'s box with 60 mm control spacing and smooth random displacements (±4 mm)."""
    from diff4mmlits.data.io import to_sitk

    image = to_sitk(reference)
    mesh = [max(1, int(np.ceil(n * s / 60.0))) for n, s in zip(image.GetSize(), image.GetSpacing())]
    bspline = sitk.BSplineTransformInitializer(image, mesh, order=3)
    parameters = np.random.default_rng(3).uniform(-4.0, 4.0, len(bspline.GetParameters()))
    bspline.SetParameters(tuple(float(v) for v in parameters))
    return bspline


def test_a_coarse_displacement_field_maps_every_voxel_like_the_bspline() -> None:
    direction = np.diag([-1.0, 1.0, 1.0])  # a flipped axis: the coarse grid follows the reference's direction
    reference = Volume(np.zeros((20, 96, 96), np.float32), (2.5, 0.7, 0.7), (40.0, -30.0, -30.0), direction)
    bspline = _smooth_bspline(reference)
    exact = dense_transform(bspline, reference)
    coarse = dense_transform(bspline, reference, spacing_mm=2.0)
    fine_field = sitk.DisplacementFieldTransform(exact).GetDisplacementField()
    coarse_field = sitk.DisplacementFieldTransform(coarse).GetDisplacementField()
    assert fine_field.GetSize() == (96, 96, 20)
    assert coarse_field.GetSize() == (34, 34, 20)  # z kept (2.5 mm)
    points = reference.index_to_world(np.argwhere(np.ones(reference.shape, bool))[::37])[:, ::-1]  # (x, y, z) mm
    error = [np.linalg.norm(np.subtract(coarse.TransformPoint(tuple(p)), bspline.TransformPoint(tuple(p)))) for p in points]
    assert max(error) < 0.05  # mm, corners and edges included (outside a field's domain it would be 0 displacement)


def test_a_coarse_reference_keeps_its_own_grid() -> None:
    reference = Volume(np.zeros((10, 12, 14), np.float32), (3.0, 3.0, 3.0))
    field = sitk.DisplacementFieldTransform(dense_transform(_smooth_bspline(reference), reference, spacing_mm=2.0))
    assert field.GetDisplacementField().GetSize() == (14, 12, 10)
