"""QC numbers: Dice (empty → None), NMI, TRE."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from diff4mmlits.data.volume import Volume
from diff4mmlits.register.qc import label_dice, region_nmi, target_registration_error


def test_label_dice_is_none_for_a_structure_absent_from_both_labels() -> None:
    array = np.zeros((4, 4, 4), np.uint8)
    array[:2] = 1
    label = Volume(array, (1.0, 1.0, 1.0), kind="label")
    assert label_dice(label, label, None) == {"liver": 1.0, "tumor": None}


def test_nmi_is_highest_for_aligned_images(rng) -> None:
    image = rng.normal(0, 100, (10, 12, 14))
    mask = np.ones(image.shape, bool)
    aligned = region_nmi(image, 2 * image + 30, mask, (-300, 300))
    shifted = region_nmi(image, np.roll(2 * image + 30, 3, axis=2), mask, (-300, 300))
    assert aligned is not None and shifted is not None
    assert aligned > shifted and 1.0 <= shifted and aligned <= 2.0


def test_tre_is_the_remaining_displacement(shifted_case) -> None:
    case, _, shift = shifted_case
    truth = np.broadcast_to(shift, case.annotated.shape + (3,))
    mask = case.label.array > 0
    before = target_registration_error(None, case.annotated, truth, mask)
    np.testing.assert_allclose(before, np.linalg.norm(shift))
    exact = sitk.TranslationTransform(3, tuple(float(v) for v in shift[::-1]))
    np.testing.assert_allclose(target_registration_error(exact, case.annotated, truth, mask), 0.0, atol=1e-9)
