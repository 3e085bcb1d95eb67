"""Displacement fields on disk: ITK vector images with (x, y, z) components, read back as (z, y, x)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from diff4mmlits.data.io import read_displacement_field, write_displacement_field, write_volume
from diff4mmlits.data.volume import Volume
from diff4mmlits.errors import InputError


def test_displacement_round_trip_keeps_values_components_and_geometry(tmp_path, rng) -> None:
    direction = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])  # columns: world direction of z, y, x axes
    grid = Volume(np.zeros((4, 5, 6), np.uint8), spacing_mm=(3.0, 2.0, 1.5), origin_mm=(-10.0, 5.0, 7.5), direction=direction, kind="label")
    field = rng.normal(size=(4, 5, 6, 3))
    field[..., 0] += 10.0  # a z shift, to see the component order
    path = write_displacement_field(field, grid, tmp_path / "d.nii.gz")
    image = sitk.ReadImage(str(path))
    assert image.GetNumberOfComponentsPerPixel() == 3 and image.GetPixelID() == sitk.sitkVectorFloat64
    assert np.allclose(sitk.GetArrayFromImage(image)[..., 2], field[..., 0])  # ITK's third component is z
    back, back_grid = read_displacement_field(path)
    np.testing.assert_array_equal(back, field)
    assert back_grid.same_grid(grid)
    sitk.DisplacementFieldTransform(image)  # loads directly


def test_reading_a_scalar_image_as_a_field_is_an_input_error(tmp_path) -> None:
    path = write_volume(Volume(np.zeros((3, 3, 3), np.float32), spacing_mm=(1, 1, 1)), tmp_path / "scalar.nii.gz")
    with pytest.raises(InputError, match="3 components"):
        read_displacement_field(path)
    with pytest.raises(InputError, match="not found"):
        read_displacement_field(tmp_path / "missing.nii.gz")
