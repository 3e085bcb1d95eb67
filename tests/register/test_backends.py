"""The optional registration backends (elastix, ConvexAdam) behind the one interface (issue 17)."""

from __future__ import annotations

import builtins
import importlib.util

import numpy as np
import pytest
import SimpleITK as sitk

from diff4mmlits.config import resolve_config
from diff4mmlits.data.io import to_sitk
from diff4mmlits.errors import InputError
from diff4mmlits.register.backends import BACKENDS, register_phase, require_backend
from diff4mmlits.register.qc import target_registration_error
from diff4mmlits.register.roi import liver_roi
from diff4mmlits.register.stage import transform_suffix, write_transform

HAVE = {"elastix": importlib.util.find_spec("itk") is not None, "convexadam": importlib.util.find_spec("convexAdam") is not None}


def test_every_method_of_the_config_has_a_backend() -> None:
    from diff4mmlits.config import setting_choices

    assert set(setting_choices("register.method")) == set(BACKENDS)


@pytest.mark.parametrize("method, module", [("elastix", "itk"), ("convexadam", "convexAdam.convex_adam_MIND")])
def test_a_missing_backend_is_one_clear_line(monkeypatch, method, module) -> None:
    real_import = builtins.__import__

    def without(name, *args, **kwargs):
        if name == module or name.startswith(module.split(".")[0] + "."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without)
    with pytest.raises(InputError) as error:
        require_backend(method)
    message = str(error.value)
    assert "\n" not in message and "pip install" in message and method in message


@pytest.mark.parametrize("method", ["elastix", "convexadam"])
def test_backend_registers_the_phantom_and_writes_a_transform_that_reproduces_it(method, small_phantom, tmp_path) -> None:
    if not HAVE[method]:
        pytest.skip(f"{method} is not installed (pip install 'diff4mmlits[{method}]')")
    case, truth = small_phantom.case, small_phantom.truth
    # smoke's budgets are too small; at size 32 (7.5 mm pixels) a 40 mm B-spline grid fits the noise
    config = resolve_config("demo", overrides=[f"register.method={method}", "register.elastix_grid_mm=60",
                                               "register.elastix_iterations=80"]).register
    fixed, roi = to_sitk(case.annotated), to_sitk(liver_roi(case, config.margin_mm).mask)
    moving = to_sitk(case.phases["AP"])
    registration = register_phase(fixed, moving, roi, config)
    liver = case.label.array > 0
    before = target_registration_error(None, case.annotated, truth.displacement_mm["AP"], liver).mean()
    after = target_registration_error(registration.transform, case.annotated, truth.displacement_mm["AP"], liver).mean()
    assert before > 4.0 and after < 0.5 * before, (before, after)
    # the file SimpleITK reads back resamples the phase as the transform itself does
    path = write_transform(registration.transform, tmp_path / f"AP{transform_suffix(registration.transform)}")
    again = sitk.ReadTransform(str(path))
    direct = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, registration.transform, sitk.sitkLinear, -1024.0))
    through_file = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, again, sitk.sitkLinear, -1024.0))
    np.testing.assert_allclose(through_file, direct, atol=1e-3)
    # the same inputs give the same transform (one thread, fixed seeds)
    repeat = register_phase(fixed, moving, roi, config)
    direct_again = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, repeat.transform, sitk.sitkLinear, -1024.0))
    np.testing.assert_array_equal(direct_again, direct)


def test_displacement_fields_are_written_as_hdf5_and_the_rest_as_text() -> None:
    field = sitk.Image([4, 4, 4], sitk.sitkVectorFloat64)
    composite = sitk.CompositeTransform([sitk.AffineTransform(3), sitk.DisplacementFieldTransform(field)])
    assert transform_suffix(composite) == ".h5"
    assert transform_suffix(sitk.AffineTransform(3)) == ".tfm"
    assert transform_suffix(sitk.CompositeTransform([sitk.Euler3DTransform(), sitk.AffineTransform(3)])) == ".tfm"


def test_convexadam_field_has_the_grid_geometry() -> None:
    pytest.importorskip("convexAdam")
    from diff4mmlits.register.convexadam import field_transform

    grid = sitk.Image([8, 6, 4], sitk.sitkFloat32)
    grid.SetSpacing((2.0, 2.0, 2.0))
    grid.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, -1))  # z stored the other way
    displacement = np.zeros((4, 6, 8, 3))
    displacement[..., 0] = 1.0  # one voxel along array axis 0 (z)
    displacement[..., 2] = -0.5  # half a voxel along x
    transform = field_transform(displacement, grid)
    point = grid.TransformIndexToPhysicalPoint((3, 3, 2))
    moved = np.subtract(transform.TransformPoint(point), point)
    np.testing.assert_allclose(moved, (-1.0, 0.0, -2.0), atol=1e-9)  # x: −0.5·2 mm; z: 1·2 mm, flipped
