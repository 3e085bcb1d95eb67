"""What every backend registers: windowed, cropped phases on a working grid no finer than the setting."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from diff4mmlits.config import resolve_config
from diff4mmlits.data.io import to_sitk
from diff4mmlits.data.volume import Volume
from diff4mmlits.register.method import register_phase_chain
from diff4mmlits.register.phase import prepare_pair, to_working_grid
from diff4mmlits.register.qc import target_registration_error
from diff4mmlits.register.roi import liver_roi

from .conftest import make_shifted_case


def _corners(image: sitk.Image) -> np.ndarray:
    """World positions of the box's corners (voxel edges), (8, 3) mm."""
    size, spacing = np.asarray(image.GetSize()), np.asarray(image.GetSpacing())
    points = []
    for corner in np.ndindex(2, 2, 2):
        index = np.asarray(corner) * size - 0.5
        points.append(image.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in index)))
    assert spacing.all()
    return np.asarray(points)


def test_a_fine_image_goes_to_the_working_spacing_over_the_same_box(rng) -> None:
    direction = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    image = sitk.GetImageFromArray(rng.normal(60.0, 20.0, (30, 100, 90)).astype(np.float32))
    image.SetSpacing((0.6, 0.6, 2.5))
    image.SetOrigin((10.0, -20.0, 30.0))
    image.SetDirection(direction)
    working = to_working_grid(image, 2.0)
    assert working.GetSize() == (30, 33, 30) and working.GetDirection() == direction  # 0.6 mm × 3; z kept
    np.testing.assert_allclose(working.GetSpacing(), (1.8, 1.8, 2.5))
    np.testing.assert_allclose(_corners(working), _corners(image), atol=0.6 + 1e-6)  # at most a partial block less
    assert abs(sitk.GetArrayViewFromImage(working).mean() - 60.0) < 1.0  # intensities kept, noise averaged
    assert sitk.GetArrayViewFromImage(working).std() < 0.5 * sitk.GetArrayViewFromImage(image).std()


def test_a_coarse_image_is_used_as_it_is() -> None:
    image = sitk.Image(8, 8, 8, sitk.sitkFloat32)
    image.SetSpacing((3.0, 3.0, 5.0))
    assert to_working_grid(image, 2.0) is image and to_working_grid(image, 0.0) is image


def test_a_fine_scan_is_registered_on_the_working_grid_as_well_as_at_full_resolution() -> None:
    case, _, shift = make_shifted_case(shape=(36, 140, 160), spacing=(4.0, 1.2, 1.4))  # the same anatomy, finer
    config = resolve_config("smoke", overrides=["register.method=affine"]).register
    fixed, roi = to_sitk(case.annotated), to_sitk(liver_roi(case, config.margin_mm).mask)
    moving = to_sitk(case.phases["DP"])
    truth = np.broadcast_to(shift, case.annotated.shape + (3,))
    liver = case.label.array > 0
    errors = {}
    for spacing in (0.0, 2.0):
        setting = config.model_copy(update={"working_spacing_mm": spacing})
        working, _, working_roi = prepare_pair(fixed, moving, roi, setting.intensity_window_hu, spacing)
        assert min(working.GetSpacing()) >= (spacing or 1.2) * 0.7 and working_roi.GetSize() == working.GetSize()
        registration = register_phase_chain(fixed, moving, roi, setting)
        errors[spacing] = target_registration_error(registration.transform, case.annotated, truth, liver).mean()
    assert errors[2.0] < 0.15 * np.linalg.norm(shift) and errors[2.0] < errors[0.0] + 0.5, errors


def test_the_region_is_nearest_neighbour_on_the_fixed_working_grid() -> None:
    label = np.zeros((10, 40, 40), np.uint8)
    label[3:7, 10:30, 12:28] = 1
    mask = Volume(label, (3.0, 0.5, 0.5), kind="label")
    working = to_working_grid(to_sitk(mask), 2.0, label=True)
    values = np.unique(sitk.GetArrayViewFromImage(working))
    assert set(values) <= {0, 1} and working.GetPixelID() == sitk.sitkUInt8
    kept = sitk.GetArrayViewFromImage(working).sum() * np.prod(working.GetSpacing())
    assert abs(kept - label.sum() * 3.0 * 0.25) < 0.35 * label.sum() * 0.75  # about the same volume, mm³
