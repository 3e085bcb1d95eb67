"""`Volume`: geometry in (z, y, x), world mapping, grid comparison."""

from __future__ import annotations

import numpy as np
import pytest

from diff4mmlits.data.volume import Volume, grid_mismatch, require_same_grid
from diff4mmlits.errors import InputError


def make(**kw) -> Volume:
    values = {"array": np.zeros((4, 5, 6), np.float32), "spacing_mm": (2.0, 1.0, 0.5), "origin_mm": (10.0, -5.0, 3.0)}
    values.update(kw)
    return Volume(**values)


def test_index_to_world_and_back_with_a_flipped_axis() -> None:
    direction = np.diag([1.0, -1.0, 1.0])
    volume = make(direction=direction)
    world = volume.index_to_world(np.array([[0, 0, 0], [1, 2, 3]]))
    np.testing.assert_allclose(world, [[10.0, -5.0, 3.0], [12.0, -7.0, 4.5]])
    np.testing.assert_allclose(volume.world_to_index(world), [[0, 0, 0], [1, 2, 3]])
    np.testing.assert_allclose(volume.affine_zyx[:3, 3], volume.origin_mm)
    low, high = volume.world_bounds_mm()
    np.testing.assert_allclose(low, [10.0, -9.0, 3.0])
    np.testing.assert_allclose(high, [16.0, -5.0, 5.5])
    assert volume.voxel_volume_ml == pytest.approx(0.001)


@pytest.mark.parametrize(
    ("change", "word"),
    [
        ({"array": np.zeros((4, 5, 7), np.float32)}, "shape"),
        ({"spacing_mm": (2.0, 1.0, 0.6)}, "spacing"),
        ({"origin_mm": (10.0, -5.0, 3.01)}, "origin"),
        ({"direction": np.diag([1.0, 1.0, -1.0])}, "direction"),
    ],
)
def test_grid_mismatch_names_the_difference(change: dict, word: str) -> None:
    a, b = make(), make(**change)
    assert grid_mismatch(a, a) is None and a.same_grid(make(origin_mm=(10.0, -5.0, 3.0005)))
    problem = grid_mismatch(b, a)
    assert problem is not None and problem.startswith(word)
    with pytest.raises(InputError, match=f"x/AP vs PVP: {word}"):
        require_same_grid(a, b, what="x/AP vs PVP")


def test_volume_must_be_3d_and_with_array_keeps_the_grid() -> None:
    with pytest.raises(InputError, match="must be 3D"):
        Volume(np.zeros((4, 5)), (1.0, 1.0, 1.0))
    volume = make()
    label = volume.with_array(np.ones(volume.shape, np.uint8), kind="label")
    assert label.kind == "label" and label.same_grid(volume)
    with pytest.raises(ValueError):
        volume.with_array(np.ones((2, 2, 2)))


def test_a_grid_mismatch_says_its_axis_order_and_gives_a_tolerance_only_in_mm() -> None:
    """'shape (44, 64, 64) differs from (48, 64, 64) (tolerance 0.001 mm)': numpy's z, y, x order
    unsaid where the rest of the tool speaks x, y, z, and a tolerance in mm on a voxel count."""
    a = Volume(np.zeros((4, 5, 6), np.float32), (2.0, 1.0, 1.0))
    with pytest.raises(InputError) as caught:
        require_same_grid(a, Volume(np.zeros((3, 5, 6), np.float32), (2.0, 1.0, 1.0)), "pred vs truth")
    assert str(caught.value.message) == "pred vs truth: shape (z, y, x) (3, 5, 6) differs from (4, 5, 6)"
    assert grid_mismatch(a, Volume(a.array, (2.5, 1.0, 1.0))) == \
        "spacing (z, y, x) (2, 1, 1) mm differs from (2.5, 1, 1) mm (by more than 0.001 mm)"
