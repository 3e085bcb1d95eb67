"""Slice and cube sampling: shapes, padding, labels aligned with their images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diff4mmlits.translate.sampling import SampleSource


def source_with_coordinates() -> SampleSource:
    """Images whose value encodes (case, z, y, x), and labels that equal the image value mod 7."""
    images, labels = [], []
    for case, shape in enumerate([(3, 20, 24), (5, 40, 36)]):
        z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
        code = (case * 1000 + z * 100 + y * 10 + x).astype(np.float32)
        images.append(code[None])
        labels.append((code % 7).astype(np.uint8))
    return SampleSource(images, labels)


def test_slices_are_cropped_padded_and_labels_follow_the_image() -> None:
    source = source_with_coordinates()
    generator = torch.Generator().manual_seed(0)
    images, labels = source.sample(6, 32, 2, generator)
    assert images.shape == (6, 1, 32, 32) and labels.shape == (6, 1, 32, 32)
    inside = images > -1  # padding value is -1
    assert torch.equal(labels[inside], (images[inside] % 7).long())
    assert (~inside).any()  # the first case (20 × 24) had to be padded


def test_cubes_in_3d() -> None:
    source = source_with_coordinates()
    images, labels = source.sample(2, 16, 3, torch.Generator().manual_seed(1))
    assert images.shape == (2, 1, 16, 16, 16) and labels.shape == (2, 1, 16, 16, 16)


def test_slices_are_drawn_from_every_case_and_the_seed_fixes_them() -> None:
    source = source_with_coordinates()
    a, _ = source.sample(40, 16, 2, torch.Generator().manual_seed(3))
    b, _ = source.sample(40, 16, 2, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    cases = {int(v) // 1000 for v in a.amax(dim=(1, 2, 3))}
    assert cases == {0, 1}


def test_mismatched_labels_are_refused() -> None:
    with pytest.raises(ValueError, match="label shape"):
        SampleSource([np.zeros((1, 2, 4, 4), np.float32)], [np.zeros((2, 4, 5), np.uint8)])
