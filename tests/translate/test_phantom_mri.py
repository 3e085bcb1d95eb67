"""MRI-like rendering: T1 post-contrast ordering, bias field, Rician noise, unknown tissues."""

from __future__ import annotations

import numpy as np
import pytest

from diff4mmlits.cli import main
from diff4mmlits.data.dataset import load_dataset
from diff4mmlits.data.phantom import TISSUES
from diff4mmlits.data.phantom.mri import (
    MRIRendering,
    bias_field,
    mri_case_from_phantom,
    relative_signal,
    render_mri,
)
from diff4mmlits.data.volume import grid_mismatch
from diff4mmlits.errors import InputError

from .conftest import TOY_TISSUES, toy_tissues


def tissue_means(image: np.ndarray, tissues: np.ndarray) -> dict[str, float]:
    return {name: float(image[tissues == tid].mean()) for tid, name in TOY_TISSUES.items() if (tissues == tid).any()}


def test_t1_post_contrast_order_differs_from_ct() -> None:
    tissues = toy_tissues((10, 48, 48), np.random.default_rng(0))
    clean = MRIRendering(contrast_jitter=0.0, blur_vox=0.0, bias_amplitude=(0.0, 0.0), noise_fraction=(0.01, 0.01))
    means = tissue_means(render_mri(tissues, TOY_TISSUES, np.random.default_rng(1), clean), tissues)
    assert means["air"] < 0.05 * means["liver"]
    assert means["spleen"] < means["liver"]  # reversed from CT PVP (spleen > liver)
    assert means["hcc"] < means["liver"]  # washout
    assert means["fat"] < means["muscle"] < means["liver"]  # fat suppressed
    assert means["liver"] == pytest.approx(400.0, rel=0.05)


def test_rician_noise_is_positive_and_biased_upward_in_air() -> None:
    tissues = np.zeros((4, 32, 32), dtype=np.uint8)
    settings = MRIRendering(blur_vox=0.0, bias_amplitude=(0.0, 0.0), noise_fraction=(0.05, 0.05))
    image = render_mri(tissues, TOY_TISSUES, np.random.default_rng(2), settings)
    sigma = 0.05 * settings.liver_signal
    assert image.min() >= 0
    assert image.mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.05)  # Rayleigh mean where the signal is 0


def test_bias_field_is_smooth_and_within_its_amplitude() -> None:
    field = bias_field((8, 32, 32), np.random.default_rng(3), amplitude=0.2)
    assert np.exp(-0.2) - 1e-6 <= field.min() and field.max() <= np.exp(0.2) + 1e-6
    assert np.abs(np.diff(np.log(field), axis=2)).max() < 0.05


def test_same_seed_same_image_and_unknown_ids_are_refused() -> None:
    tissues = toy_tissues((4, 16, 16), np.random.default_rng(0))
    a = render_mri(tissues, TOY_TISSUES, np.random.default_rng(5))
    b = render_mri(tissues, TOY_TISSUES, np.random.default_rng(5))
    assert np.array_equal(a, b)
    with pytest.raises(InputError, match="no name"):
        render_mri(tissues, {0: "air"}, np.random.default_rng(5))
    assert relative_signal("some_new_vein") > 1.0  # unknown names fall back on keywords


def test_phantom_patient_as_mri_keeps_grid_and_label(phantom_case) -> None:
    mri = mri_case_from_phantom(phantom_case, np.random.default_rng(0))
    ct = phantom_case.case
    assert mri.phase_names == ["PVP"] and mri.label is ct.label
    assert grid_mismatch(mri.annotated, ct.annotated) is None
    tissues = phantom_case.truth.tissues.array
    means = {name: float(mri.annotated.array[tissues == tid].mean()) for tid, name in TISSUES.items() if (tissues == tid).any()}
    assert means["spleen"] < means["liver"] < means["portal_vein"]
    assert means["bone_cortex"] < means["muscle"] and means["air"] < 0.1 * means["liver"]


def test_phantom_mri_command_writes_a_dataset_the_translator_reads(tmp_path) -> None:
    out = tmp_path / "mri"
    assert main(["phantom", str(out), "--cases", "2", "--seed", "4", "--size", "24", "--modality", "mri"]) == 0
    cases = load_dataset(out)
    assert len(cases) == 2 and all(c.phase_names == ["PVP"] and c.label is not None for c in cases)
