"""The registration chain: it reduces the true misalignment, is deterministic, and falls back."""

from __future__ import annotations

import numpy as np
import pytest

from diff4mmlits.config import resolve_config
from diff4mmlits.data.io import to_sitk
from diff4mmlits.errors import InputError
from diff4mmlits.register.method import register_phase_chain as register_phase
from diff4mmlits.register.method import stage_names
from diff4mmlits.register.qc import target_registration_error
from diff4mmlits.register.roi import liver_roi


def test_stage_names_follow_the_chain() -> None:
    assert stage_names("none") == ()
    assert stage_names("affine") == ("rigid", "affine")
    assert stage_names("bspline") == ("rigid", "affine", "bspline")


def test_registration_reduces_the_true_error_on_the_phantom(small_phantom, smoke_config) -> None:
    case, truth = small_phantom.case, small_phantom.truth
    fixed, roi = to_sitk(case.annotated), to_sitk(liver_roi(case, smoke_config.margin_mm).mask)
    liver = case.label.array > 0
    for phase in ("AP", "DP"):
        registration = register_phase(fixed, to_sitk(case.phases[phase]), roi, smoke_config)
        before = target_registration_error(None, case.annotated, truth.displacement_mm[phase], liver).mean()
        after = target_registration_error(registration.transform, case.annotated, truth.displacement_mm[phase], liver).mean()
        assert before > 4.0  # the phantom breathes 5–15 mm
        assert after < 0.35 * before and after < 3.5, (phase, before, after)


@pytest.mark.parametrize("method", ["rigid", "affine"])
def test_registration_reduces_the_error_of_a_known_shift(shifted_case, method) -> None:
    case, _, shift = shifted_case
    config = resolve_config("smoke", overrides=[f"register.method={method}"]).register
    fixed, roi = to_sitk(case.annotated), to_sitk(liver_roi(case, config.margin_mm).mask)
    truth = np.broadcast_to(shift, case.annotated.shape + (3,))
    registration = register_phase(fixed, to_sitk(case.phases["DP"]), roi, config)
    after = target_registration_error(registration.transform, case.annotated, truth, case.label.array > 0).mean()
    assert after < 0.4 * np.linalg.norm(shift)


def test_same_seed_same_transform_other_seed_other_sample(shifted_case) -> None:
    case, _, _ = shifted_case
    config = resolve_config("smoke", overrides=["register.method=rigid"]).register
    fixed, roi = to_sitk(case.annotated), to_sitk(liver_roi(case, config.margin_mm).mask)
    moving = to_sitk(case.phases["AP"])
    first = np.asarray(register_phase(fixed, moving, roi, config).transform.GetParameters())
    again = np.asarray(register_phase(fixed, moving, roi, config).transform.GetParameters())
    np.testing.assert_array_equal(again, first)
    other = config.model_copy(update={"sampling_seed": 5})
    assert np.abs(np.asarray(register_phase(fixed, moving, roi, other).transform.GetParameters()) - first).max() > 1e-6


def test_the_whole_chain_is_bit_reproducible_with_the_default_single_thread(small_phantom, smoke_config) -> None:
    # with SimpleITK's multithreaded metric the B-spline stage turned last-digit differences into
    # different transforms (up to 1000 HU apart at edges after resampling) between two identical runs
    import SimpleITK as sitk

    case = small_phantom.case
    fixed, roi = to_sitk(case.annotated), to_sitk(liver_roi(case, smoke_config.margin_mm).mask)
    moving = to_sitk(case.phases["AP"])
    assert smoke_config.threads == 1
    previous = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)  # what a 2-core machine gives every filter
    try:
        runs = [register_phase(fixed, moving, roi, smoke_config) for _ in range(3)]
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous)
    assert len({(r.kept, r.metric_after) for r in runs}) == 1
    grids = [sitk.GetArrayFromImage(sitk.Resample(moving, fixed, r.transform, sitk.sitkLinear, -1024.0)) for r in runs]
    assert all(np.array_equal(grids[0], g) for g in grids[1:])


def test_a_stage_that_ends_worse_falls_back_and_says_so(shifted_case) -> None:
    case, _, _ = shifted_case
    strict = resolve_config("smoke", overrides=["register.method=affine", "register.divergence_tolerance=-100"]).register
    fixed, roi = to_sitk(case.annotated), to_sitk(liver_roi(case, strict.margin_mm).mask)
    registration = register_phase(fixed, to_sitk(case.phases["AP"]), roi, strict, label="shifted/AP")
    assert registration.kept == "none"
    assert [s.name for s in registration.stages] == ["rigid", "affine"]  # affine starts again from the identity
    assert not any(s.accepted for s in registration.stages)
    assert "diverged" in registration.fallbacks[0] and "kept none" in registration.fallbacks[0]
    assert np.allclose(registration.transform.TransformPoint((1.0, 2.0, 3.0)), (1.0, 2.0, 3.0))


def test_a_phase_outside_the_region_is_an_input_error(shifted_case, smoke_config) -> None:
    case, _, _ = shifted_case
    far = to_sitk(case.phases["AP"])
    far.SetOrigin(tuple(o + 3000.0 for o in far.GetOrigin()))
    fixed, roi = to_sitk(case.annotated), to_sitk(liver_roi(case, smoke_config.margin_mm).mask)
    with pytest.raises(InputError, match=r"shifted/AP: cannot be compared .* overlap") as err:
        register_phase(fixed, far, roi, smoke_config, label="shifted/AP")
    assert "\n" not in str(err.value)
