"""A phase whose header is mirrored relative to the annotated phase is refused before registration;
one stored in another orientation but right is registered; predict turns a case stored otherwise
than the training cases into their orientation and back, so the label does not depend on storage."""

from __future__ import annotations

import numpy as np
import pytest
from segment_cases import make_case

from diff4mmlits.config import resolve_config
from diff4mmlits.data.case import Case
from diff4mmlits.data.orientation import orientation_code, reorient
from diff4mmlits.data.volume import Volume
from diff4mmlits.errors import InputError
from diff4mmlits.register import register_case
from diff4mmlits.register.qc import target_registration_error
from diff4mmlits.segment.predict import load_segmenter, segment_case


def with_phase(case: Case, name: str, volume: Volume) -> Case:
    return Case(case.case_id, {**case.phases, name: volume}, case.label, case.annotated_phase)


def header_flipped(volume: Volume, axes: tuple[int, ...]) -> Volume:
    """The same voxels under a direction with the given array axes negated, over the same world box:
    mirrored anatomy in the world (whatever the volume's own storage order)."""
    direction = np.asarray(volume.direction).copy()
    origin = np.asarray(volume.origin_mm, dtype=float).copy()
    for axis in axes:
        origin += direction[:, axis] * volume.spacing_mm[axis] * (volume.shape[axis] - 1)
        direction[:, axis] *= -1
    return Volume(volume.array, volume.spacing_mm, tuple(origin), direction)


@pytest.mark.parametrize(("axes", "mirror"), [((2,), "left-right"), ((1, 2,), "rotated 180° in the axial plane")])
def test_a_mirrored_phase_header_is_refused_with_one_line(phantom_case, axes, mirror: str) -> None:
    case = phantom_case.case
    # a phase the phantom stores as PVP is (some it stores with a flipped axis, rightly declared)
    name = next(p for p in ("AP", "DP", "NC") if np.allclose(case.phases[p].direction, case.annotated.direction))
    broken = with_phase(case, name, header_flipped(case.phases[name], axes))
    with pytest.raises(InputError, match=f"phase {name} is stored as .* where PVP is LPS, and its anatomy looks mirrored .{mirror}") as err:
        register_case(broken, resolve_config("smoke").register)
    assert "\n" not in str(err.value)


def test_a_phase_stored_in_another_orientation_but_right_is_registered(phantom_case) -> None:
    case = phantom_case.case
    ras = reorient(case.phases["AP"], "RAS")
    assert orientation_code(ras) == "RAS" and ras.shape[1:] == case.phases["AP"].shape[1:]
    result = register_case(with_phase(case, "AP", ras), resolve_config("smoke").register)
    plain = register_case(case, resolve_config("smoke").register)
    assert result.qc["phases"]["AP"]["status"] == plain.qc["phases"]["AP"]["status"] == "registered"
    assert result.qc["phases"]["AP"]["kept"] != "none"
    truth, liver = phantom_case.truth.displacement_mm["AP"], case.label.array > 0
    before = target_registration_error(None, case.annotated, truth, liver).mean()
    after = target_registration_error(result.transforms["AP"], case.annotated, truth, liver).mean()
    assert after < 0.5 * before  # registered in the world, whatever the storage order
    # registration samples its metric on the moving grid, so the results differ a little, not more
    difference = np.abs(result.case.phases["AP"].array - plain.case.phases["AP"].array)
    assert np.median(difference) < 1.0 and np.mean(difference) < 5.0


def test_reorientation_keeps_every_voxel_in_place_and_round_trips() -> None:
    case = make_case("c", seed=1)
    pvp = case.phases["PVP"]
    for code in ("RAS", "LPI", "ASL"):
        turned = reorient(pvp, code)
        assert orientation_code(turned) == code
        back = reorient(turned, "LPS")
        assert back.same_grid(pvp) and np.array_equal(back.array, pvp.array)
        centre = np.array(turned.shape) // 2  # the same world point holds the same value
        assert np.isclose(turned.array[tuple(centre)], pvp.array[tuple(np.round(_index_in(pvp, turned, centre)).astype(int))])


def _index_in(target: Volume, source: Volume, index: np.ndarray) -> np.ndarray:
    world = np.asarray(source.origin_mm) + np.asarray(source.direction) @ (index * np.asarray(source.spacing_mm))
    return np.linalg.solve(np.asarray(target.direction), world - np.asarray(target.origin_mm)) / np.asarray(target.spacing_mm)


def test_predict_gives_the_same_label_whatever_the_storage_orientation(trained_model) -> None:
    segmenter = load_segmenter(trained_model, device="cpu")
    assert segmenter.model_config["orientation"] == "LPS"
    case = make_case("new", seed=5)
    stored_ras = Case("new", {k: reorient(v, "RAS") for k, v in case.phases.items()}, None, case.annotated_phase)
    label = segment_case(case, segmenter)
    label_ras = segment_case(stored_ras, segmenter)
    assert label_ras.same_grid(stored_ras.annotated)
    assert np.array_equal(reorient(label_ras, "LPS").array, label.array)


def test_the_orientation_line_is_said_once_a_case(trained_model, caplog) -> None:
    """predict printed 'stored as RAS, the model was trained on LPS…' twice: once more for the coarse
    pass that finds the liver before registration."""
    from diff4mmlits.segment.predict import locate_liver

    segmenter = load_segmenter(trained_model, device="cpu")
    case = make_case("new", seed=5)
    stored_ras = Case("new", {k: reorient(v, "RAS") for k, v in case.phases.items()}, None, case.annotated_phase)
    with caplog.at_level("INFO", logger="diff4mmlits"):
        locate_liver(stored_ras, segmenter)
        segment_case(stored_ras, segmenter)
    assert caplog.text.count("stored as RAS, the model was trained on LPS") == 1
