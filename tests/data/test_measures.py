"""The shared small measures: Dice's empty-mask rule and the equivalent-sphere radius."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diff4mmlits.data.measures import dice, equivalent_radius_mm, sphere_radius_mm


def test_dice_overlap_and_its_empty_mask_rule() -> None:
    a = np.zeros((4, 4, 4), bool)
    b = a.copy()
    assert dice(a, b) == 1.0  # both empty: the paper's rule
    assert dice(a, b, empty=None) is None  # registration QC: undefined
    assert dice(a, b, empty=0.0) == 0.0
    a[:2] = True
    assert dice(a, b) == 0.0 and dice(a, b, empty=None) == 0.0  # one empty: no overlap, whatever the rule
    b[1:3] = True
    assert dice(a, b) == 0.5
    assert dice(a, a) == 1.0
    assert dice(a.astype(np.uint8) * 2, b) == 0.5  # nonzero counts as inside


def test_equivalent_radius_of_a_sphere_and_of_anisotropic_voxels() -> None:
    assert equivalent_radius_mm(8, (1.0, 1.0, 1.0)) == pytest.approx((6 / math.pi) ** (1 / 3))
    volume_mm3 = 4 / 3 * math.pi * 5.0**3  # a 5 mm sphere
    voxels = 1000
    spacing = (volume_mm3 / voxels / 0.25, 0.5, 0.5)
    assert equivalent_radius_mm(voxels, spacing) == pytest.approx(5.0)
    assert sphere_radius_mm(volume_mm3 / 1000) == pytest.approx(5.0)
    assert 2 * equivalent_radius_mm(8, (1.0, 1.0, 1.0)) == pytest.approx((48 / math.pi) ** (1 / 3))  # the diameter
